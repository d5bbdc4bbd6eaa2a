//! The shape of `src/`, enforced. This test parses every source file (with `syn`) and
//! fails when:
//! - a top-level module is not placed in a layer below (a new module must be placed);
//! - a module imports a module of a higher layer — the direction is transports →
//!   capabilities → shared mechanisms → db → foundation;
//! - two or more top-level modules import each other, directly or round a cycle;
//! - code outside the transports names `axum`, `tower`, `tower_http`, `utoipa_axum`,
//!   `utoipa_swagger_ui`, the `http` and `http_body` crates, `hyper` or `hyper_util`;
//! - anything but `auth` makes a `Principal` or an `Operator`, or opens the credential
//!   check's tenant transaction — the doors of the tenant wall.
//!
//! `ARCHITECTURE.md` explains the layers; this is where they are kept.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// The layers, bottom first. A module may import modules of its own layer or lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "config",
            "clock",
            "error",
            "id",
            "page",
            "rule",
            "observability",
            "access",
        ],
    ),
    ("database", &["db"]),
    (
        "shared mechanisms",
        &[
            "audit",
            "events",
            "idempotency",
            "versioning",
            "shared",
            "traffic",
            "cache",
        ],
    ),
    (
        "capabilities",
        &[
            "plans",
            "usage",
            "tenancy",
            "users",
            "api_keys",
            "auth",
            "catalog",
            "orders",
            "realtime",
            "platform",
            "quotas",
            "billing",
            "data_rights",
            "webhooks",
        ],
    ),
    ("transports", &["http", "graphql", "cli", "startup"]),
];

/// Crates only the transports may name.
const TRANSPORT_CRATES: &[&str] = &[
    "axum",
    "tower",
    "tower_http",
    "utoipa_axum",
    "utoipa_swagger_ui",
    "http",
    "http_body",
    "hyper",
    "hyper_util",
];

/// Calls that open the tenant wall, and the one module allowed to make them (besides the
/// module that defines each, for its own tests).
const DOORS: &[(&str, &str, &str)] = &[
    ("Principal", "verified", "access"),
    ("Operator", "verified", "access"),
    ("TenantTx", "begin_for_credential_check", "db"),
];
const DOOR_KEEPER: &str = "auth";

/// One parsed source file.
struct Source {
    /// Relative to the repository, for messages.
    path: String,
    /// The module path of the file (`src/orders/mod.rs` → `["orders"]`).
    module: Vec<String>,
    file: syn::File,
}

impl Source {
    fn parse(path: &str, text: &str) -> Self {
        let relative = path.strip_prefix("src/").unwrap_or(path);
        let mut module: Vec<String> = relative
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"));
        Self {
            path: path.to_owned(),
            module,
            file,
        }
    }

    /// The top-level module the file belongs to; `None` for the crate roots.
    fn top(&self) -> Option<&str> {
        match self.module.first().map(String::as_str) {
            None | Some("lib") | Some("main") => None,
            Some(top) => Some(top),
        }
    }
}

/// What one file refers to.
#[derive(Default)]
struct References {
    /// Top-level modules of this crate.
    modules: BTreeSet<String>,
    /// First segments of every other path: external crates (and local names).
    roots: BTreeSet<String>,
    /// `Type::function` pairs, for the doors.
    calls: BTreeSet<(String, String)>,
}

struct Collector {
    /// The module path the visitor is in (the file's, plus inline modules).
    module: Vec<String>,
    found: References,
}

impl Collector {
    /// Records a path given as its segments. A lone segment outside a `use` is a local
    /// name (a variable, a type in scope), not a crate.
    fn path(&mut self, segments: &[String], in_use: bool) {
        let Some(first) = segments.first() else {
            return;
        };
        let resolved: Option<Vec<String>> = match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "super" | "self" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while let Some(segment) = rest.first() {
                    match segment.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                Some(base)
            }
            _ => {
                if in_use || segments.len() > 1 {
                    self.found.roots.insert(first.clone());
                }
                None
            }
        };
        if let Some(top) = resolved.as_ref().and_then(|p| p.first()) {
            self.found.modules.insert(top.clone());
        }
        if segments.len() >= 2 {
            let n = segments.len();
            self.found
                .calls
                .insert((segments[n - 2].clone(), segments[n - 1].clone()));
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.path(prefix, true);
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.path(prefix, true);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.path(prefix, true),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths inside macro calls and attributes (`json!`, `#[schema(body = …)]`), which
    /// `syn` leaves as tokens: every `a::b::c` run is recorded as a path.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut colons = 0;
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    if colons != 2 && !run.is_empty() {
                        self.path(&run, false);
                        run.clear();
                    }
                    run.push(ident.to_string());
                    colons = 0;
                }
                TokenTree::Punct(punct) if punct.as_char() == ':' => colons += 1,
                other => {
                    self.path(&run, false);
                    run.clear();
                    colons = 0;
                    if let TokenTree::Group(group) = other {
                        self.tokens(group.stream());
                    }
                }
            }
        }
        self.path(&run, false);
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        visit::visit_item_mod(self, item);
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.path(&segments, path.leading_colon.is_some());
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }

    fn visit_attribute(&mut self, attribute: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &attribute.meta {
            self.tokens(list.tokens.clone());
        }
        visit::visit_attribute(self, attribute);
    }
}

fn references(source: &Source) -> References {
    let mut collector = Collector {
        module: source.module.clone(),
        found: References::default(),
    };
    collector.visit_file(&source.file);
    collector.found
}

/// Every rule the sources break, as sentences.
fn violations(sources: &[Source]) -> Vec<String> {
    let layer_of: BTreeMap<&str, (usize, &str)> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(rank, (layer, modules))| modules.iter().map(move |m| (*m, (rank, *layer))))
        .collect();
    let transports = LAYERS.last().map(|(_, modules)| *modules).unwrap_or(&[]);
    let tops: BTreeSet<&str> = sources.iter().filter_map(Source::top).collect();
    let mut problems = Vec::new();

    for top in &tops {
        if !layer_of.contains_key(top) {
            problems.push(format!(
                "src/{top} is in no layer: place it in LAYERS in tests/api/architecture.rs (and in ARCHITECTURE.md)"
            ));
        }
    }

    let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let Some(top) = source.top() else { continue };
        let found = references(source);
        let edges = graph.entry(top).or_default();
        for module in &found.modules {
            if module != top && tops.contains(module.as_str()) {
                edges.insert(module.clone());
                if let (Some((from, from_layer)), Some((to, to_layer))) =
                    (layer_of.get(top), layer_of.get(module.as_str()))
                    && to > from
                {
                    problems.push(format!(
                        "{}: `{top}` ({from_layer}) imports `{module}` ({to_layer}), a higher layer",
                        source.path
                    ));
                }
            }
        }
        if !transports.contains(&top) {
            for krate in found.roots.intersection(
                &TRANSPORT_CRATES
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<BTreeSet<_>>(),
            ) {
                problems.push(format!(
                    "{}: `{top}` is not a transport but names `{krate}`",
                    source.path
                ));
            }
        }
        for (ty, function, home) in DOORS {
            let called = found
                .calls
                .contains(&(ty.to_string(), function.to_string()));
            if called && top != DOOR_KEEPER && top != *home {
                problems.push(format!(
                    "{}: only `{DOOR_KEEPER}` may call `{ty}::{function}`",
                    source.path
                ));
            }
        }
    }

    for tangle in tangles(&graph) {
        let cycle = shortest_cycle(&graph, &tangle);
        let others = tangle.len() + 1 - cycle.len();
        let more = if others > 0 {
            format!(" ({others} more modules are tangled in with them)")
        } else {
            String::new()
        };
        problems.push(format!(
            "top-level modules import each other: {}{more}",
            cycle.join(" → ")
        ));
    }
    problems
}

/// The shortest cycle through the first module of a tangle, staying inside it: a path
/// that can be read and cut.
fn shortest_cycle(graph: &BTreeMap<&str, BTreeSet<String>>, tangle: &[String]) -> Vec<String> {
    let start = &tangle[0];
    let inside: BTreeSet<&String> = tangle.iter().collect();
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node.as_str()).into_iter().flatten() {
            if !inside.contains(next) {
                continue;
            }
            if next == start {
                let mut cycle = vec![start.clone()];
                let mut at = node.clone();
                while at != *start {
                    cycle.push(at.clone());
                    at = came_from[&at].clone();
                }
                cycle.push(start.clone());
                cycle.reverse();
                return cycle;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    tangle.to_vec()
}

/// The groups of modules that import each other, directly or round a cycle: the
/// strongly connected components of more than one module (Tarjan).
fn tangles(graph: &BTreeMap<&str, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<&'g str, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, node: &str) {
            self.index.insert(node.to_owned(), self.next);
            self.low.insert(node.to_owned(), self.next);
            self.next += 1;
            self.stack.push(node.to_owned());
            self.on_stack.insert(node.to_owned());
            let edges: Vec<String> = self
                .graph
                .get(node)
                .map(|e| e.iter().cloned().collect())
                .unwrap_or_default();
            for next in edges {
                if !self.index.contains_key(&next) {
                    self.visit(&next);
                    let low = self.low[node].min(self.low[&next]);
                    self.low.insert(node.to_owned(), low);
                } else if self.on_stack.contains(&next) {
                    let low = self.low[node].min(self.index[&next]);
                    self.low.insert(node.to_owned(), low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(&member);
                    let done = member == node;
                    component.push(member);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(*node) {
            tarjan.visit(node);
        }
    }
    tarjan.found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .iter()
        .map(|path| {
            let relative = path
                .strip_prefix(root)
                .expect("under the repository")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(path).expect("a readable source file");
            Source::parse(&relative, &text)
        })
        .collect()
}

#[test]
fn the_modules_of_src_keep_their_layers_and_import_no_cycle() {
    let sources = crate_sources();
    assert!(
        sources.len() > 30,
        "the test found only {} source files",
        sources.len()
    );
    let problems = violations(&sources);
    assert!(
        problems.is_empty(),
        "src/ breaks its architecture:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_layered_module_exists() {
    let tops: BTreeSet<String> = crate_sources()
        .iter()
        .filter_map(|s| s.top().map(str::to_owned))
        .collect();
    for (layer, modules) in LAYERS {
        for module in *modules {
            assert!(
                tops.contains(*module),
                "LAYERS places `{module}` in {layer}, but src/{module} does not exist"
            );
        }
    }
}

/// The checker itself: each kind of violation, in a small made-up tree, is caught.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let tree = |files: &[(&str, &str)]| -> Vec<String> {
        let sources: Vec<Source> = files
            .iter()
            .map(|(path, text)| Source::parse(path, text))
            .collect();
        violations(&sources)
    };
    let clean = [
        (
            "src/db/mod.rs",
            "use crate::{config::Config, id::TenantId};",
        ),
        (
            "src/orders/commands.rs",
            "use crate::{catalog::products, db::TenantTx};",
        ),
        (
            "src/catalog/mod.rs",
            "use super::db; fn f() { crate::error::Error::internal(1); }",
        ),
        ("src/http/mod.rs", "use axum::Router; use crate::orders;"),
        (
            "src/auth/login.rs",
            "fn f() { Principal::verified(1, 2, 3, None); }",
        ),
    ];
    assert_eq!(tree(&clean), Vec::<String>::new(), "a clean tree passes");

    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("src/orders/commands.rs", "use axum::Json;")],
            "`orders` is not a transport but names `axum`",
        ),
        (
            &[(
                "src/catalog/products/mod.rs",
                "#[utoipa::path(responses((body = axum::Json)))] fn f() {}",
            )],
            "names `axum`",
        ),
        (
            &[(
                "src/orders/queries.rs",
                "fn f() { let _ = json!(crate::http::AppState::new()); }",
            )],
            "`orders` (capabilities) imports `http` (transports)",
        ),
        (
            &[("src/db/mod.rs", "use crate::auth::Principal;")],
            "`db` (database) imports `auth` (capabilities)",
        ),
        (
            &[
                ("src/catalog/mod.rs", "use crate::orders::Order;"),
                ("src/orders/mod.rs", "use super::catalog::Product;"),
            ],
            "catalog → orders → catalog",
        ),
        (
            &[("src/gadgets/mod.rs", "use crate::db::Db;")],
            "src/gadgets is in no layer",
        ),
        (
            &[(
                "src/users/mod.rs",
                "fn f() { access::Principal::verified(t, a, s, None); }",
            )],
            "only `auth` may call `Principal::verified`",
        ),
        (
            &[(
                "src/orders/commands.rs",
                "async fn f() { TenantTx::begin_for_credential_check(db, t, a).await; }",
            )],
            "only `auth` may call `TenantTx::begin_for_credential_check`",
        ),
    ];
    for (files, expected) in cases {
        let mut all: Vec<(&str, &str)> = clean.to_vec();
        all.extend_from_slice(files);
        let found = tree(&all);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected a violation containing {expected:?}, got {found:#?}"
        );
    }
}
