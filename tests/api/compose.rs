//! The docker compose stack (`docker-compose.yml`, `Dockerfile`, `.dockerignore`,
//! `.env.example`) holds to what the README promises. Docker does not run here, so the
//! files are read: the compose file parsed as YAML, the others line by line, and checked
//! against the README's compose section and the variables tenantry reads. Where Compose is
//! installed, `docker compose config --quiet` (with a `.env`) is the check to run by hand.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use tenantry::config;
use yaml_rust2::{Yaml, YamlLoader};

const COMPOSE: &str = include_str!("../../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");
const ENV_EXAMPLE: &str = include_str!("../../.env.example");
const GITIGNORE: &str = include_str!("../../.gitignore");
const README: &str = include_str!("../../README.md");

/// The secrets of the stack: tenantry's five (each with a development default in
/// `config`), the Postgres superuser's password and Grafana's admin password.
const SECRETS: [&str; 7] = [
    "JWT_SECRET",
    "TENANTRY_OPERATOR_TOKEN",
    "TENANTRY_TOKEN_HASH_KEY",
    "DATABASE_APP_PASSWORD",
    "DATABASE_PLATFORM_PASSWORD",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
];

/// The standard OpenTelemetry variables the tenantry service may set beside its own.
const OTEL_VARIABLES: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
];

fn compose() -> Yaml {
    let mut documents = YamlLoader::load_from_str(COMPOSE).expect("docker-compose.yml is YAML");
    assert_eq!(documents.len(), 1, "one YAML document");
    documents.remove(0)
}

/// Each service by name.
fn services(compose: &Yaml) -> BTreeMap<String, Yaml> {
    compose["services"]
        .as_hash()
        .expect("a services mapping")
        .iter()
        .map(|(name, service)| (string_of(name).to_owned(), service.clone()))
        .collect()
}

fn string_of(yaml: &Yaml) -> &str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {yaml:?}"))
}

/// A service's `environment`, which must be a mapping of strings (Compose refuses a bare
/// `true` or `on`, which YAML reads as booleans).
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    service["environment"]
        .as_hash()
        .map(|hash| {
            hash.iter()
                .map(|(name, value)| {
                    let name = string_of(name).to_owned();
                    let value = value
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: quote the value {value:?}"))
                        .to_owned();
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A list of strings (`ports`, `volumes`, a healthcheck's `test`); empty when absent.
fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec()
        .map(|items| {
            items
                .iter()
                .map(|item| string_of(item).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One `${...}` of the compose file.
#[derive(Debug, PartialEq)]
enum Interpolation {
    /// `${NAME:?message}`: compose stops when NAME is unset or empty.
    Required(String),
    /// `${NAME:-default}`.
    Defaulted(String, String),
}

/// Every `${...}` in `text`, refusing the forms that let a missing value through silently
/// (`$NAME`, `${NAME}`, `${NAME-default}`, `${NAME?message}`).
fn interpolations(text: &str) -> Vec<Interpolation> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let inner = rest.strip_prefix('{').unwrap_or_else(|| {
            panic!("a bare $ in {text:?}: write ${{NAME:?...}} or ${{NAME:-...}}")
        });
        let end = inner.find('}').expect("every ${ is closed");
        let (body, after) = (&inner[..end], &inner[end + 1..]);
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| panic!("${{{body}}} says neither :? nor :- in {text:?}"));
        let (name, operator) = body.split_at(name_end);
        found.push(match (operator.get(..2), operator.get(2..)) {
            (Some(":?"), Some(message)) if !message.is_empty() => {
                Interpolation::Required(name.to_owned())
            }
            (Some(":-"), Some(default)) => {
                Interpolation::Defaulted(name.to_owned(), default.to_owned())
            }
            _ => panic!("${{{body}}}: write ${{NAME:?message}} or ${{NAME:-default}}"),
        });
        rest = after;
    }
    found
}

/// Every `${...}` of the compose file: in its strings, where Compose looks (not in its
/// comments).
fn all_interpolations() -> Vec<Interpolation> {
    fn strings_in(yaml: &Yaml, found: &mut Vec<String>) {
        match yaml {
            Yaml::String(s) => found.push(s.clone()),
            Yaml::Array(items) => items.iter().for_each(|item| strings_in(item, found)),
            Yaml::Hash(hash) => hash.iter().for_each(|(key, value)| {
                strings_in(key, found);
                strings_in(value, found);
            }),
            _ => {}
        }
    }
    let mut found = Vec::new();
    strings_in(&compose(), &mut found);
    found.iter().flat_map(|s| interpolations(s)).collect()
}

/// `text` with each `${NAME:-default}` replaced by its default.
fn with_defaults(text: &str) -> String {
    let mut out = text.to_owned();
    for interpolation in interpolations(text) {
        if let Interpolation::Defaulted(name, default) = interpolation {
            out = out.replace(&format!("${{{name}:-{default}}}"), &default);
        }
    }
    out
}

/// The README's section `heading`, up to the next section of its level.
fn readme_section(heading: &str) -> &'static str {
    let section = README
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has a section {heading:?}"))
        .1;
    section.split_once("\n## ").map_or(section, |(s, _)| s)
}

/// The service table of the README's compose section (`| service | image | ...`): each
/// service with its image cell.
fn readme_services() -> BTreeMap<String, String> {
    let section = readme_section("## Docker compose");
    let table = section
        .split_once("\n| service | image |")
        .expect("a table of services")
        .1;
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let service = cells[1].trim_matches('`');
            (service.to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The variables `.env.example` sets, with their values (commented lines are not set).
fn env_example() -> BTreeMap<String, String> {
    ENV_EXAMPLE
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("NAME=value, not {line:?}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_readme_names_every_service_of_the_stack_with_its_image() {
    let services = services(&compose());
    let readme = readme_services();
    assert_eq!(
        readme.keys().collect::<Vec<_>>(),
        services.keys().collect::<Vec<_>>(),
        "the README's compose table against docker-compose.yml"
    );
    for (name, service) in &services {
        let image = match service["image"].as_str() {
            Some(image) => format!("`{image}`"),
            None => {
                assert_eq!(
                    string_of(&service["build"]),
                    ".",
                    "{name}: built from the Dockerfile"
                );
                "built from `Dockerfile`".to_owned()
            }
        };
        assert_eq!(readme[name], image, "{name}: the README's image");
    }
    for service in [
        "postgres",
        "redis",
        "tenantry",
        "prometheus",
        "grafana",
        "jaeger",
    ] {
        assert!(services.contains_key(service), "the stack has {service}");
    }
}

#[test]
fn every_image_is_pinned_to_a_version() {
    for (name, service) in services(&compose()) {
        let Some(image) = service["image"].as_str() else {
            continue;
        };
        let (_, tag) = image
            .rsplit_once(':')
            .filter(|(repository, _)| !repository.is_empty())
            .unwrap_or_else(|| panic!("{name}: {image} has no tag"));
        let version = tag.trim_start_matches('v');
        assert!(
            version.split('.').count() >= 2
                && version
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
            "{name}: {image} is pinned to a version (major.minor at least), not {tag:?}"
        );
    }

    // The image's bases: the toolchain by version, both stages on one Debian release (the
    // binary links against the builder's glibc).
    let bases: Vec<&str> = DOCKERFILE
        .lines()
        .filter_map(|line| line.strip_prefix("FROM "))
        .map(|from| from.split_whitespace().next().unwrap())
        .filter(|image| image.contains(':'))
        .collect();
    assert_eq!(bases, ["rust:1.95-bookworm", "debian:bookworm-slim"]);
    let rust_version = env!("CARGO_PKG_RUST_VERSION");
    let toolchain = bases[0]
        .trim_start_matches("rust:")
        .split('-')
        .next()
        .unwrap();
    let minor = |version: &str| version.split('.').nth(1).unwrap().parse::<u32>().unwrap();
    assert!(
        minor(toolchain) >= minor(rust_version),
        "the builder's Rust {toolchain} is at least Cargo.toml's rust-version {rust_version}"
    );
}

#[test]
fn every_service_has_a_healthcheck_a_restart_policy_and_waits_for_what_it_needs() {
    let services = services(&compose());
    for (name, service) in &services {
        let test = strings(&service["healthcheck"]["test"]);
        assert!(
            matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")) && test.len() > 1,
            "{name}: a healthcheck test, got {test:?}"
        );
        assert_eq!(
            service["restart"].as_str(),
            Some("unless-stopped"),
            "{name}: restarts after a crash or a reboot"
        );
        if let Some(depends_on) = service["depends_on"].as_hash() {
            for (other, condition) in depends_on {
                let other = string_of(other);
                assert!(services.contains_key(other), "{name} depends on {other}");
                let condition = string_of(&condition["condition"]);
                assert!(
                    ["service_healthy", "service_started"].contains(&condition),
                    "{name} → {other}: {condition}"
                );
            }
        }
    }

    // tenantry bootstraps the database as it starts, so it waits for Postgres to accept
    // connections, and reports ready through its own subcommand.
    let tenantry = &services["tenantry"];
    assert_eq!(
        string_of(&tenantry["depends_on"]["postgres"]["condition"]),
        "service_healthy"
    );
    assert_eq!(
        strings(&tenantry["healthcheck"]["test"]),
        ["CMD", "tenantry", "healthcheck"]
    );
    assert!(
        DOCKERFILE.contains("CMD [\"tenantry\", \"healthcheck\"]"),
        "the image's HEALTHCHECK runs the same probe"
    );
    let cli = <tenantry::cli::Cli as clap::CommandFactory>::command();
    assert!(
        cli.find_subcommand("healthcheck").is_some(),
        "the binary has the healthcheck subcommand"
    );
}

#[test]
fn published_ports_bind_to_loopback_unless_a_publish_variable_says_otherwise() {
    let documented: BTreeSet<&str> = ENV_EXAMPLE
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .collect();
    let mut published = 0;
    for (name, service) in services(&compose()) {
        for port in strings(&service["ports"]) {
            published += 1;
            let found = interpolations(&port);
            let [Interpolation::Defaulted(variable, default)] = &found[..] else {
                panic!("{name}: {port:?} publishes at ${{*_PUBLISH:-127.0.0.1:port}}");
            };
            assert!(variable.ends_with("_PUBLISH"), "{name}: {variable}");
            assert!(
                default.starts_with("127.0.0.1:") || default.starts_with("[::1]:"),
                "{name}: {port:?} binds to loopback by default"
            );
            let resolved = with_defaults(&port);
            assert_eq!(
                resolved.matches(':').count(),
                2,
                "{name}: {resolved} names address, host port and container port"
            );
            assert!(
                documented.contains(format!("{variable}={default}").as_str()),
                "{name}: .env.example shows how to move it (# {variable}={default})"
            );
        }
    }
    assert_eq!(published, 4, "the API, Grafana, Prometheus and Jaeger's UI");
}

#[test]
fn tenantry_sets_only_variables_it_reads_and_runs_in_production() {
    let compose = compose();
    let services = services(&compose);
    let environment = environment(&services["tenantry"]);
    for name in environment.keys() {
        assert!(
            config::VARIABLES.contains(&name.as_str()) || OTEL_VARIABLES.contains(&name.as_str()),
            "tenantry reads no variable {name}"
        );
    }
    assert_eq!(environment["TENANTRY_ENV"], "production");
    assert_eq!(environment["REDIS_URL"], "redis://redis:6379");
    assert_eq!(
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "http://jaeger:4318"
    );
    assert_eq!(environment["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    assert_eq!(environment["OTEL_SERVICE_NAME"], "tenantry");
    assert!(
        environment["DATABASE_URL"].ends_with("@postgres:5432/tenantry"),
        "{}",
        environment["DATABASE_URL"]
    );
    // Prometheus scrapes tenantry:8080; the published port leads there too.
    assert_eq!(environment["TENANTRY_LISTEN"], "0.0.0.0:8080");
    assert!(strings(&services["tenantry"]["ports"])[0].ends_with(":8080"));
    assert!(!environment.contains_key("TENANTRY_ALLOW_DEV_SECRETS"));
}

#[test]
fn every_secret_comes_from_the_env_file_and_none_has_a_value_in_the_compose_file() {
    let services = services(&compose());
    let tenantry = environment(&services["tenantry"]);
    for secret in &SECRETS[..5] {
        assert_eq!(
            interpolations(&tenantry[*secret]),
            [Interpolation::Required((*secret).to_owned())],
            "tenantry's {secret} is ${{{secret}:?...}} and nothing else"
        );
    }
    let database_url = &tenantry["DATABASE_URL"];
    assert_eq!(
        interpolations(database_url),
        [Interpolation::Required("POSTGRES_PASSWORD".to_owned())]
    );
    assert!(database_url.starts_with("postgres://postgres:${POSTGRES_PASSWORD:?"));
    assert_eq!(
        interpolations(&environment(&services["postgres"])["POSTGRES_PASSWORD"]),
        [Interpolation::Required("POSTGRES_PASSWORD".to_owned())]
    );
    assert_eq!(
        interpolations(&environment(&services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]),
        [Interpolation::Required("GRAFANA_ADMIN_PASSWORD".to_owned())]
    );

    // No secret is defaulted anywhere, and no development default is written out.
    for interpolation in all_interpolations() {
        if let Interpolation::Defaulted(name, _) = interpolation {
            assert!(!SECRETS.contains(&name.as_str()), "{name} has a default");
        }
    }
    for default in [
        config::DEV_JWT_SECRET,
        config::DEV_OPERATOR_TOKEN,
        config::DEV_TOKEN_HASH_KEY,
        config::DEV_DB_ROLE_PASSWORD,
    ] {
        assert!(
            !COMPOSE.contains(default),
            "{default} in docker-compose.yml"
        );
    }
    assert!(
        !COMPOSE.contains("env_file"),
        "secrets come from .env alone, through ${{...}}"
    );
}

#[test]
fn the_env_example_sets_exactly_what_compose_requires_and_production_refuses_it() {
    let required: BTreeSet<String> = all_interpolations()
        .into_iter()
        .filter_map(|interpolation| match interpolation {
            Interpolation::Required(name) => Some(name),
            Interpolation::Defaulted(..) => None,
        })
        .collect();
    let example = env_example();
    assert_eq!(
        example.keys().cloned().collect::<BTreeSet<_>>(),
        required,
        ".env.example against the ${{NAME:?...}} of docker-compose.yml"
    );
    assert_eq!(
        required,
        SECRETS.iter().map(|s| (*s).to_owned()).collect(),
        "compose requires the secrets, and only them"
    );

    // Copied verbatim, the example is refused: its values are tenantry's published
    // development defaults, which production refuses.
    let mut vars: BTreeMap<&str, &str> = example
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    vars.insert("TENANTRY_ENV", "production");
    let error = config::Config::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned()))
        .expect_err("production refuses the example's secrets");
    for secret in &SECRETS[..5] {
        assert!(error.to_string().contains(secret), "{secret} in: {error}");
    }

    // The real file stays out of git and out of the image.
    assert!(GITIGNORE.lines().any(|line| line == "/.env"));
    assert!(!dockerignore_lets_in().contains(".env"));
}

#[test]
fn the_readme_way_to_make_a_real_env_gives_each_secret_a_fresh_value() {
    let generate = readme_section("## Docker compose")
        .lines()
        .find(|line| line.contains("openssl rand"))
        .expect("the README shows how to generate .env");
    assert!(
        ENV_EXAMPLE.contains(generate),
        ".env.example shows the same command"
    );
    let dir = std::env::temp_dir().join(crate::helpers::unique("tenantry-env"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env.example"), ENV_EXAMPLE).unwrap();

    let mut made = Vec::new();
    for _ in 0..2 {
        let output = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", generate])
            .current_dir(&dir)
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        made.push(std::fs::read_to_string(dir.join(".env")).unwrap());
    }
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.join(".env"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(mode, 0o600, "only its owner may read .env");
    let example = env_example();
    let parse = |env: &str| -> BTreeMap<String, String> {
        env.lines()
            .map(|line| {
                let (name, value) = line.split_once('=').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    };
    let (first, second) = (parse(&made[0]), parse(&made[1]));
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        example.keys().collect::<Vec<_>>()
    );
    let values: BTreeSet<&String> = first.values().collect();
    assert_eq!(values.len(), first.len(), "every secret its own value");
    for (name, value) in &first {
        assert!(
            value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: 32 random bytes in hex (safe in a URL), got {value:?}"
        );
        assert_ne!(value, &second[name], "{name}: fresh on every run");
    }
}

#[test]
fn the_files_compose_mounts_exist_and_the_data_lives_in_volumes() {
    let compose = compose();
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_hash()
        .expect("named volumes")
        .keys()
        .map(string_of)
        .collect();
    let mut named = BTreeMap::new();
    let mut missing = Vec::new();
    for (name, service) in services(&compose) {
        for volume in strings(&service["volumes"]) {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if let Some(path) = source.strip_prefix("./") {
                // A file compose cannot find is mounted as an empty directory: the service
                // would start and read nothing.
                let path = repository().join(path);
                let file = target.ends_with(".yml");
                if !(if file { path.is_file() } else { path.is_dir() }) {
                    missing.push(format!(
                        "{name}: {source} ({})",
                        if file { "a file" } else { "a folder" }
                    ));
                }
                assert!(
                    volume.ends_with(":ro"),
                    "{name}: {volume} is mounted read-only"
                );
            } else {
                assert!(
                    declared.contains(source),
                    "{name}: volume {source} declared"
                );
                named.insert(name.clone(), source.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "compose mounts what the repository lacks: {missing:#?}"
    );
    for service in ["postgres", "prometheus", "grafana"] {
        assert!(
            named.contains_key(service),
            "{service} keeps its data in a volume"
        );
    }
}

/// What `.dockerignore` lets into the build context. It is an allow list: `*` leaves
/// everything out, then `!name` lets each of the build's inputs back in; any other line
/// may only leave more out.
fn dockerignore_lets_in() -> BTreeSet<&'static str> {
    let patterns: Vec<&str> = DOCKERIGNORE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(patterns.first(), Some(&"*"), "everything is left out first");
    patterns[1..]
        .iter()
        .filter_map(|pattern| pattern.strip_prefix('!'))
        .inspect(|name| {
            assert!(
                !name.contains(['*', '?', '[', '/']),
                "{name}: let in by its plain top-level name"
            );
        })
        .collect()
}

#[test]
fn the_build_context_holds_the_build_inputs_and_neither_target_nor_git() {
    let let_in = dockerignore_lets_in();
    for left_out in ["target", ".git", ".env", "tests", "grafana"] {
        assert!(!let_in.contains(left_out), "{left_out} is let in");
    }
    // The manifest and lock file, the sources, and what the sources embed.
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "src", "benches"]
        .map(String::from)
        .into();
    for file in walk(&repository().join("src")) {
        let source = std::fs::read_to_string(&file).unwrap();
        for embed in ["include_str!(\"", "include_bytes!(\"", "migrate!(\""] {
            for (at, _) in source.match_indices(embed) {
                let path = source[at + embed.len()..].split('"').next().unwrap();
                let resolved = if embed == "migrate!(\"" {
                    repository().join(path)
                } else {
                    file.parent().unwrap().join(path)
                };
                let resolved = resolved.canonicalize().unwrap();
                let top = resolved
                    .strip_prefix(repository().canonicalize().unwrap())
                    .unwrap()
                    .components()
                    .next()
                    .unwrap();
                needed.insert(top.as_os_str().to_string_lossy().into_owned());
            }
        }
    }
    assert!(needed.contains("migrations") && needed.contains("policies"));
    let let_in: BTreeSet<String> = let_in.into_iter().map(String::from).collect();
    assert_eq!(
        let_in, needed,
        "what .dockerignore lets in against what the build reads"
    );
}

/// Every `.rs` file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_image_builds_the_dependencies_before_it_copies_the_sources() {
    // Stages by name, each with its instructions in order.
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for line in DOCKERFILE.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(from) = line.strip_prefix("FROM ") {
            let name = from.split_once(" AS ").map_or("", |(_, name)| name);
            stages.push((name.to_owned(), Vec::new()));
        } else if let Some((_, instructions)) = stages.last_mut() {
            // A continuation line belongs to the instruction before it.
            match instructions.last_mut() {
                Some(last) if last.ends_with('\\') => last.push_str(line),
                _ => instructions.push(line.to_owned()),
            }
        }
    }
    let stage = |name: &str| -> &Vec<String> {
        &stages
            .iter()
            .find(|(stage, _)| stage == name)
            .unwrap_or_else(|| panic!("a stage {name}"))
            .1
    };
    let position = |instructions: &[String], prefix: &str| {
        instructions
            .iter()
            .position(|i| i.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {instructions:#?}"))
    };

    let planner = stage("planner");
    assert!(position(planner, "COPY . .") < position(planner, "RUN cargo chef prepare"));

    let build = stage("build");
    let recipe = position(build, "COPY --from=planner /src/recipe.json");
    let cook = position(build, "RUN cargo chef cook --release --locked");
    let sources = position(build, "COPY . .");
    let compile = position(build, "RUN cargo build --release --locked");
    assert!(
        recipe < cook && cook < sources && sources < compile,
        "recipe, cooked dependencies, sources, build: {build:#?}"
    );
    assert_eq!(
        build[..cook]
            .iter()
            .filter(|i| i.starts_with("COPY"))
            .count(),
        1,
        "only the recipe is copied before the dependencies are built"
    );

    let runtime = &stages.last().unwrap().1;
    let user = &runtime[position(runtime, "USER ")];
    assert!(
        !["USER root", "USER 0"].contains(&user.as_str()),
        "the server runs as {user}"
    );
    assert!(position(runtime, "USER ") < position(runtime, "ENTRYPOINT"));
    assert!(runtime.iter().any(|i| i.starts_with("HEALTHCHECK")));
}
