use super::*;

fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn defaults_match_the_spec() {
    let config = parse(&[]).expect("defaults are valid");
    assert_eq!(config.bind_addr.port(), 8000);
    assert_eq!(config.db_pool_size, 5);
    assert_eq!(config.redis_url, "redis://localhost:6379/0");
    assert_eq!(config.log_format, LogFormat::Text);
    assert!(config.admin_token.is_none());
}

#[test]
fn bad_values_name_their_variable() {
    for (var, value) in [
        ("BIND_ADDR", "0.0.0.0:http"),
        ("DB_POOL_SIZE", "many"),
        ("DB_POOL_SIZE", "0"),
        ("REDIS_URL", "tcp://nowhere"),
        ("DATABASE_URL", "postgresql://u@h:notaport/db"),
        ("LOG_FORMAT", "xml"),
        ("CONFERENCE", "woodstock"),
        ("PUBLIC_URL", "ftp://example.org"),
        ("METRICS_ADDR", "0.0.0.0"),
        ("PROBE_ADDR", "localhost:9101"),
        ("PROBE_ADDR", "0.0.0.0:8000"),
        ("ADMIN_TOKEN", ""),
        ("ADMIN_TOKEN", "  "),
        ("ADMIN_TOKEN", "two words two words two words"),
        ("ADMIN_TOKEN", "short"),
        ("MAX_STREAMS", "0"),
        ("MAX_CONNECTIONS", "lots"),
        ("STREAM_RESERVE", "-1"),
        ("ONE_VOTE_PER_DEVICE", "true"),
        ("DEVICE_KEY", "abcd"),
    ] {
        let err = parse(&[(var, value)]).expect_err(var);
        assert_eq!(err.var, var);
        assert!(
            err.to_string().starts_with(&format!("invalid {var}=")),
            "{err}"
        );
    }
}

#[test]
fn errors_never_show_passwords() {
    let err =
        parse(&[("DATABASE_URL", "postgresql://app:hunter2@db:notaport/x")]).expect_err("bad port");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("app:***@db"), "{err}");
    assert_eq!(
        redact_password("redis://:pw@r:6379/0"),
        "redis://:***@r:6379/0"
    );
    assert_eq!(redact_password("redis://r:6379/0"), "redis://r:6379/0");
}

#[test]
fn key_value_and_query_passwords_are_hidden() {
    let err = parse(&[(
        "DATABASE_URL",
        "host=db port=notaport user=app password=secret dbname=x",
    )])
    .expect_err("bad port");
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(err.to_string().contains("password=*** dbname=x"), "{err}");
    assert_eq!(
        redact_password("host=db PASSWORD = 'it\\'s se cret' user=app"),
        "host=db PASSWORD = *** user=app"
    );
    assert_eq!(
        redact_password("postgresql://db/x?user=app&password=secret&sslmode=disable"),
        "postgresql://db/x?user=app&password=***&sslmode=disable"
    );
    assert_eq!(redact_password("password='unterminated"), "password=***");
    assert_eq!(redact_password("passwords are fine"), "passwords are fine");
}

#[test]
fn optional_values_are_read() {
    let config = parse(&[
        ("CONFERENCE", "kubecon"),
        ("PUBLIC_URL", "https://vote.example.org/"),
        ("ADMIN_TOKEN", "s3cret-s3cret-s3cret-s3cr"),
        ("APP_VERSION", "dev-mirrord"),
    ])
    .expect("valid");
    assert_eq!(config.conference, Some(Conference::Kubecon));
    assert_eq!(
        config.public_url.as_deref(),
        Some("https://vote.example.org")
    );
    assert_eq!(
        config.admin_token,
        Some(AdminToken::new("s3cret-s3cret-s3cret-s3cr"))
    );
    assert_eq!(config.app_version, "dev-mirrord");
}

#[test]
fn admin_token_errors_never_show_it() {
    let err = parse(&[("ADMIN_TOKEN", "hunter2 hunter2 hunter2 hunter2")]).expect_err("space");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = parse(&[("ADMIN_TOKEN", "hunter2")]).expect_err("short");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let config = parse(&[("ADMIN_TOKEN", "hunter2-hunter2-hunter2-hunter2")]).expect("valid");
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn an_admin_token_shorter_than_24_characters_stops_start_up() {
    let short = "0123456789abcdef0123456";
    let err = parse(&[("ADMIN_TOKEN", short)]).expect_err("23 characters");
    assert_eq!(err.var, "ADMIN_TOKEN");
    assert!(err.to_string().contains("at least 24"), "{err}");
    let long = "0123456789abcdef01234567";
    assert_eq!(
        parse(&[("ADMIN_TOKEN", long)])
            .expect("24 characters")
            .admin_token,
        Some(AdminToken::new(long))
    );
}

#[test]
fn admin_token_matches_only_itself() {
    let token = AdminToken::new("0123456789abcdef01234567");
    assert!(token.matches("0123456789abcdef01234567"));
    assert!(!token.matches("0123456789abcdef01234568"));
    assert!(!token.matches("0123456789abcdef0123456"), "a prefix");
    assert!(!token.matches("0123456789abcdef012345670"), "longer");
    assert!(!token.matches(""));
}

#[test]
fn db_volume_size_takes_kubernetes_quantities() {
    let size = |v: &str| parse(&[("DB_VOLUME_SIZE", v)]).map(|c| c.db_volume_bytes);
    assert_eq!(size("1Gi").expect("valid"), Some(1 << 30));
    assert_eq!(size("500M").expect("valid"), Some(500_000_000));
    assert_eq!(size("4096").expect("valid"), Some(4096));
    assert_eq!(parse(&[]).expect("valid").db_volume_bytes, None);
    for bad in ["1GB", "Gi", "0", "-1Gi", "1.5Gi", "99999999999Ti"] {
        assert_eq!(size(bad).expect_err(bad).var, "DB_VOLUME_SIZE");
    }
}

#[test]
fn probe_addr_is_optional_and_may_share_the_metrics_address() {
    assert_eq!(parse(&[]).expect("valid").probe_addr, None);
    let config = parse(&[
        ("METRICS_ADDR", "0.0.0.0:9102"),
        ("PROBE_ADDR", "0.0.0.0:9102"),
    ])
    .expect("valid");
    assert_eq!(config.probe_addr, config.metrics_addr);
}

#[test]
fn device_key_is_32_bytes_of_hex_and_never_shown() {
    let short = "ab".repeat(31);
    let err = parse(&[("DEVICE_KEY", &short)]).expect_err("31 bytes");
    assert_eq!(err.var, "DEVICE_KEY");
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(!err.to_string().contains(&short), "{err}");
    let err = parse(&[("DEVICE_KEY", &"zz".repeat(32))]).expect_err("not hex");
    assert_eq!(err.var, "DEVICE_KEY");
    let config = parse(&[("DEVICE_KEY", &"ab".repeat(32))]).expect("valid");
    assert_eq!(config.device_key, Some(DeviceKey(vec![0xab; 32])));
    assert!(
        !format!("{config:?}").contains("171"),
        "no key bytes in Debug"
    );
}

#[test]
fn stream_reserve_stays_below_max_streams_and_devices_are_opt_in() {
    let config = parse(&[]).expect("valid");
    assert_eq!(config.stream_reserve, None);
    assert!(!config.one_vote_per_device);
    let config = parse(&[("STREAM_RESERVE", "4"), ("ONE_VOTE_PER_DEVICE", "yes")]).expect("valid");
    assert_eq!(config.stream_reserve, Some(4));
    assert!(config.one_vote_per_device);
    let err = parse(&[("STREAM_RESERVE", "8"), ("MAX_STREAMS", "8")]).expect_err("all");
    assert_eq!(err.var, "STREAM_RESERVE");
}

#[test]
fn metrics_addr_is_optional() {
    assert_eq!(parse(&[]).expect("valid").metrics_addr, None);
    let config = parse(&[("METRICS_ADDR", "0.0.0.0:9102")]).expect("valid");
    assert_eq!(
        config.metrics_addr,
        Some("0.0.0.0:9102".parse().expect("addr"))
    );
}

#[test]
fn db_max_overflow_is_accepted_and_validated_but_only_kept() {
    assert_eq!(parse(&[]).expect("unset").db_max_overflow, None);
    assert_eq!(
        parse(&[("DB_MAX_OVERFLOW", " ")])
            .expect("blank")
            .db_max_overflow,
        None
    );
    let config = parse(&[("DB_MAX_OVERFLOW", "10")]).expect("a number");
    assert_eq!(config.db_max_overflow, Some(10));
    assert_eq!(config.db_pool_size, 5, "the pool keeps its size");
    let err = parse(&[("DB_MAX_OVERFLOW", "x")]).expect_err("not a number");
    assert_eq!(
        err.to_string(),
        r#"invalid DB_MAX_OVERFLOW="x": invalid digit found in string"#
    );
}
