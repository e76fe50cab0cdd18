//! Conference branding keys (`CONFERENCE` in docs/operate.md#configuration, `?conf=`).
//! Only known keys exist, so a query string can never inject text into a page.

/// A conference the app can be branded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conference {
    Sreday,
    Kubecon,
    Devopsdays,
    Lisbon,
    Dwx,
    Munich,
}

impl Conference {
    /// Every accepted key, in the order the docs list them.
    pub const KEYS: [&'static str; 6] =
        ["sreday", "kubecon", "devopsdays", "lisbon", "dwx", "munich"];

    /// Parses a branding key; unknown keys give `None`.
    pub fn from_key(key: &str) -> Option<Self> {
        Some(match key.trim().to_ascii_lowercase().as_str() {
            "sreday" => Self::Sreday,
            "kubecon" => Self::Kubecon,
            "devopsdays" => Self::Devopsdays,
            "lisbon" => Self::Lisbon,
            "dwx" => Self::Dwx,
            "munich" => Self::Munich,
            _ => return None,
        })
    }

    /// The key as it appears in configuration and URLs.
    pub fn key(self) -> &'static str {
        match self {
            Self::Sreday => "sreday",
            Self::Kubecon => "kubecon",
            Self::Devopsdays => "devopsdays",
            Self::Lisbon => "lisbon",
            Self::Dwx => "dwx",
            Self::Munich => "munich",
        }
    }

    /// The name shown on the neon sign.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sreday => "SREday",
            Self::Kubecon => "KubeCon",
            Self::Devopsdays => "DevOpsDays",
            Self::Lisbon => "Lisbon Tech Night",
            Self::Dwx => "DWX Developer World",
            Self::Munich => "Munich Cloud Summit",
        }
    }

    /// The city named in the welcome banner and the page title.
    pub fn city(self) -> &'static str {
        match self {
            Self::Sreday | Self::Kubecon | Self::Devopsdays => "New York",
            Self::Lisbon => "Lisbon",
            Self::Dwx => "Mannheim",
            Self::Munich => "Munich",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for key in Conference::KEYS {
            let conf = Conference::from_key(key).expect("listed key parses");
            assert_eq!(conf.key(), key);
        }
        assert_eq!(Conference::from_key(" KubeCon "), Some(Conference::Kubecon));
        assert_eq!(Conference::from_key("<script>"), None);
    }
}
