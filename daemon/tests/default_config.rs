//! The shipped default config `systemd/latentd.toml` parses, holds every documented key with
//! the right type, and its values are ones the daemon accepts.

use latentd::logging::parse_level;
use toml::Value;

const DEFAULT_CONFIG: &str = include_str!("../../systemd/latentd.toml");

#[test]
fn default_config_has_every_documented_key() {
    let config: toml::Table = DEFAULT_CONFIG
        .parse()
        .expect("default config is valid TOML");
    let expected: &[(&str, &[(&str, &str)])] = &[
        (
            "audio",
            &[
                ("backend", "string"),
                ("client_name", "string"),
                ("autoconnect", "boolean"),
                ("rate", "integer"),
                ("period", "integer"),
            ],
        ),
        ("osc", &[("bind", "array"), ("allowlist", "array")]),
        ("media", &[("folder", "string")]),
        (
            "engine",
            &[
                ("knobs", "table"),
                ("prompt", "string"),
                ("depth", "integer"),
                ("steps", "integer"),
                ("loop", "float"),
            ],
        ),
        (
            "lead",
            &[
                ("gain", "float"),
                ("margin", "float"),
                ("floor", "float"),
                ("ceiling", "float"),
                ("repatch", "boolean"),
            ],
        ),
        ("state", &[]),
        ("log", &[("level", "string")]),
    ];
    assert_eq!(
        config.keys().collect::<Vec<_>>().len(),
        expected.len(),
        "sections: {:?}",
        config.keys().collect::<Vec<_>>()
    );
    for (section, keys) in expected {
        let table = config[*section]
            .as_table()
            .unwrap_or_else(|| panic!("[{section}]"));
        assert_eq!(table.len(), keys.len(), "[{section}] keys: {table:?}");
        for (key, kind) in *keys {
            let value = table
                .get(*key)
                .unwrap_or_else(|| panic!("[{section}] {key} missing"));
            assert_eq!(value.type_str(), *kind, "[{section}] {key}");
            let documented = DEFAULT_CONFIG
                .lines()
                .take_while(|line| !line.starts_with(&format!("{key} =")))
                .last()
                .is_some_and(|above| above.starts_with('#') || !above.contains('='));
            assert!(
                documented || *section == "lead",
                "[{section}] {key} has no comment above it"
            );
        }
    }
    // The state path is documented but commented out (it defaults to $STATE_DIRECTORY).
    assert!(DEFAULT_CONFIG.contains("# path = \"/var/lib/latentd/state.json\""));
}

#[test]
fn default_values_are_accepted() {
    let config: toml::Table = DEFAULT_CONFIG.parse().unwrap();
    let backend = config["audio"]["backend"].as_str().unwrap();
    assert!(["jack", "pipewire", "null"].contains(&backend), "{backend}");
    parse_level(config["log"]["level"].as_str().unwrap()).unwrap();
    for bind in config["osc"]["bind"].as_array().unwrap() {
        let bind = bind.as_str().unwrap();
        let address = bind
            .strip_prefix("udp://")
            .or_else(|| bind.strip_prefix("tcp://"))
            .unwrap_or_else(|| panic!("{bind}: no udp:// or tcp://"));
        address
            .parse::<std::net::SocketAddr>()
            .unwrap_or_else(|error| panic!("{bind}: {error}"));
    }
    let lead = &config["lead"];
    let floor = lead["floor"].as_float().unwrap();
    let ceiling = lead["ceiling"].as_float().unwrap();
    assert!(0.0 < floor && floor < ceiling, "{floor}..{ceiling}");
    let knobs = config["engine"]["knobs"].as_table().unwrap();
    assert!(knobs.values().all(|value| matches!(value, Value::Float(_))));
}
