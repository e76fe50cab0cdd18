-- $1: how many generated partners. Set-based and idempotent: reruns insert nothing.
INSERT INTO referral_partners (code, name)
SELECT 'partner-' || lpad(g::text, 7, '0'), 'Referral Partner #' || g
FROM generate_series(1, $1::int) AS g
ON CONFLICT (code) DO NOTHING
