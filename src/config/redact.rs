//! Secrets kept out of start-up errors: a value is echoed in the error
//! that refuses it, without its password.

/// Hides the password of `scheme://user:password@host`, and every
/// `password=...` (libpq's key=value form, or a URL query parameter), so that
/// a start-up error never prints a secret into the logs.
pub(super) fn redact_password(value: &str) -> String {
    redact_password_keys(&redact_userinfo(value))
}

fn redact_userinfo(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return value.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

/// `password = 'it''s \' secret'` or `password=x&...`: the value ends at its
/// closing quote, or at whitespace or `&` when unquoted.
fn redact_password_keys(value: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(found) = rest.to_ascii_lowercase().find(KEY) {
        out.push_str(&rest[..found + KEY.len()]);
        rest = &rest[found + KEY.len()..];
        let after_key = rest.trim_start();
        let Some(after_eq) = after_key.strip_prefix('=') else {
            continue;
        };
        out.push_str(&rest[..rest.len() - after_eq.len()]);
        let spaces = after_eq.len() - after_eq.trim_start().len();
        out.push_str(&after_eq[..spaces]);
        let val = &after_eq[spaces..];
        let end = if let Some(quoted) = val.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = val.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        end = i + 2;
                        break;
                    }
                    _ => {}
                }
            }
            end
        } else {
            val.find(|c: char| c.is_whitespace() || c == '&')
                .unwrap_or(val.len())
        };
        out.push_str("***");
        rest = &val[end..];
    }
    out.push_str(rest);
    out
}
