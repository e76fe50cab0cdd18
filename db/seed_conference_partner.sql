-- The code printed in the referral QR code on the projector.
INSERT INTO referral_partners (code, name)
VALUES ('conf-partner-2026', 'SREDay Conference Partner')
ON CONFLICT (code) DO NOTHING
