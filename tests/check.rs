//! `edgeward check`: exit codes and messages (file:line:col, scope, what).

mod common;
use common::*;

const VALID: &str = r#"
listen: ["127.0.0.1:8080"]
admin: { listen: "127.0.0.1:9180" }
accounts:
  alice:
    log_dir: /tmp/alice
    sites:
      blog:
        addresses: ["blog.example.org", "*.blog.example.org"]
        upstream: { address: "127.0.0.1:3000" }
"#;

fn errors_of(text: &str) -> Vec<String> {
    let (code, out) = check(text);
    assert_eq!(code, 1, "expected failure, got:\n{out}");
    out.lines()
        .filter(|l| l.contains("edgeward.yaml:") && !l.contains("error(s)"))
        .map(|l| l.split_once("edgeward.yaml:").unwrap().1.to_string())
        .collect()
}

#[test]
fn valid_file_exits_zero() {
    let (code, out) = check(VALID);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("configuration is valid (1 site(s) in 1 account(s))"),
        "{out}"
    );
}

#[test]
fn shipped_configs_are_valid() {
    for f in ["conf/edgeward.yaml", "docker/edgeward.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        let (code, out) = check_path(&path);
        // docker/edgeward.yaml names the compose service `web`, which only
        // resolves inside compose; everything else must be valid.
        if f.starts_with("docker") {
            assert!(
                code == 0 || out.contains("cannot resolve \"web\""),
                "{f}: {out}"
            );
        } else {
            assert_eq!(code, 0, "{f}: {out}");
        }
    }
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let e = errors_of(&VALID.replace("admin:", "admn:"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("3:1: unknown key `admn`"), "{e:?}");

    let e = errors_of(&VALID.replace("{ address:", "{ adress:"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("10:21: site alice/blog: upstream.adress: unknown field `adress`"),
        "{e:?}"
    );
}

#[test]
fn bad_values_name_the_setting() {
    let e = errors_of(&format!("{VALID}grace_period: 5 fortnights\nthreads: 0\n"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("11:15: grace_period: invalid duration"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("12:10: threads: must be between 1 and 1024"),
        "{e:?}"
    );

    let e = errors_of(&VALID.replace("127.0.0.1:3000", "127.0.0.1"));
    assert!(
        e[0].starts_with("10:30: site alice/blog: upstream.address: \"127.0.0.1\" has no port"),
        "{e:?}"
    );

    let e = errors_of(&VALID.replace("[\"127.0.0.1:8080\"]", "[\"localhost\"]"));
    assert!(
        e[0].starts_with("2:10: listen: \"localhost\" is not an IP:PORT address"),
        "{e:?}"
    );
}

#[test]
fn an_address_claimed_twice_is_an_error() {
    let text = format!(
        "{VALID}      shop:\n        addresses: [\"shop.example.org\", \"BLOG.example.org\"]\n        upstream: {{ address: \"127.0.0.1:3001\" }}\n"
    );
    let e = errors_of(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0],
        "12:41: site alice/shop: addresses: \"BLOG.example.org\" is already claimed by site alice/blog"
    );
    let e = errors_of(&VALID.replace("\"*.blog.example.org\"", "\"blog.example.org\""));
    assert!(e[0].contains("is listed twice"), "{e:?}");
    let e = errors_of(&VALID.replace("\"*.blog.example.org\"", "\"blog.*.org\""));
    assert!(
        e[0].contains("may only use `*` as its first label"),
        "{e:?}"
    );
}

#[test]
fn sections_are_checked() {
    let e = errors_of(&VALID.replace(
        "{ address: \"127.0.0.1:3000\" }",
        "{ command: \"node app.js\" }",
    ));
    assert!(
        e[0].contains("upstream.working_dir: required with upstream.command"),
        "{e:?}"
    );
    let e = errors_of(&VALID.replace(
        "{ address: \"127.0.0.1:3000\" }",
        "{ command: \"node app.js\", working_dir: /srv, environment: { PORT: \"1\" } }",
    ));
    assert!(
        e[0].contains("upstream.environment: PORT is set by edgeward"),
        "{e:?}"
    );
    // The WAF's errors carry their position too.
    let e = errors_of(&format!(
        "{VALID}        waf: {{ profile: strong, mode: audit }}\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("11:39: site alice/blog: waf.mode"),
        "{e:?}"
    );
    // Explicitly switched off is fine.
    let (code, out) = check(&format!(
        "{VALID}        cache: {{ enabled: false }}\n        waf: {{ profile: disabled }}\n"
    ));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
listen: ["127.0.0.1:8080"]
threads: many
accounts:
  alice:
    log_dir: /tmp/alice
    sites:
      blog:
        addresses: ["blog.example.org"]
        upstream: { address: "127.0.0.1:3000", read_timeout: soon }
        colour: blue
      shop:
        addresses: ["blog.example.org"]
        upstream: { address: "127.0.0.1:99999" }
default_site: alice/nope
"#;
    let e = errors_of(text);
    assert!(e.len() >= 5, "{e:#?}");
    assert!(e[0].starts_with("3:10: threads:"), "{e:#?}");
    assert!(
        e.iter()
            .any(|l| l
                .starts_with("10:62: site alice/blog: upstream.read_timeout: invalid duration")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("11:9: site alice/blog: unknown key `colour`")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l
                .contains("site alice/shop: addresses: \"blog.example.org\" is already claimed")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("site alice/shop: upstream.address")),
        "{e:#?}"
    );
}

#[test]
fn yaml_syntax_errors_and_missing_files() {
    let e = errors_of("listen: [\"127.0.0.1:8080\"\naccounts: {\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("invalid YAML"), "{e:?}");
    assert!(
        e[0].split(':').next().unwrap().parse::<usize>().is_ok(),
        "has a line: {e:?}"
    );

    let (code, out) = check_path(std::path::Path::new("/nonexistent/edgeward.yaml"));
    assert_eq!(code, 1);
    assert!(
        out.contains("/nonexistent/edgeward.yaml: cannot read the configuration file"),
        "{out}"
    );

    let e = errors_of("accounts: {}\n");
    assert!(e[0].contains("listen: missing"), "{e:?}");
}

#[test]
fn version_flag() {
    let out = std::process::Command::new(binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("edgeward {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn access_log_settings_are_checked() {
    let (code, out) = check(&format!(
        "{VALID}        access_log: {{ file: blog.log, format: advanced }}\n"
    ));
    assert_eq!(code, 0, "{out}");
    let e = errors_of(&format!(
        "{VALID}        access_log: {{ file: ../bob/http/x.log }}\n"
    ));
    assert!(e[0].starts_with("11:29: site alice/blog: access_log.file: \"../bob/http/x.log\" must be a plain file name"), "{e:?}");
    let e = errors_of(&format!(
        "{VALID}        access_log: {{ format: '[{{completion_date:%Y-%Q}}] {{status}}' }}\n"
    ));
    assert!(
        e[0].contains("access_log.format: column 2 of the format: invalid date pattern"),
        "{e:?}"
    );
    let e = errors_of(&format!(
        "{VALID}trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n"
    ));
    assert!(
        e[0].starts_with(
            "11:33: trusted_proxies: \"10.0.0.0/99\": the prefix length must be 0 to 32"
        ),
        "{e:?}"
    );
}

#[test]
fn listeners_must_not_overlap() {
    let e = errors_of(&VALID.replace(
        "listen: [\"127.0.0.1:8080\"]",
        "listen: [\"127.0.0.1:8080\", \"0.0.0.0:8080\"]",
    ));
    assert!(
        e[0].starts_with("2:28: listen: 0.0.0.0:8080 overlaps an address listed before it"),
        "{e:?}"
    );
    let e = errors_of(&VALID.replace("127.0.0.1:9180", "127.0.0.1:8080"));
    assert!(
        e[0].contains("admin.listen: 127.0.0.1:8080 is also a public listen address"),
        "{e:?}"
    );
    let e = errors_of(&VALID.replace("[\"127.0.0.1:8080\"]", "[\"0.0.0.0:9180\"]"));
    assert!(
        e[0].contains("admin.listen: 127.0.0.1:9180 is also a public listen address"),
        "{e:?}"
    );
    // A missing listen is reported even next to other errors.
    let e = errors_of(&VALID.replace("listen: [\"127.0.0.1:8080\"]\n", "threads: x\n"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().any(|l| l.contains("listen: missing")), "{e:?}");
}
