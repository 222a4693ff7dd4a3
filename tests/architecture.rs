//! Structural rules the compiler cannot enforce.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module names listed in `tenant_owned!(...)` in `src/entities/mod.rs`.
fn tenant_owned_modules(root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join("src/entities/mod.rs")).unwrap();
    let start = text
        .find("tenant_owned!(\n")
        .expect("tenant_owned! invocation");
    let body = &text[start + "tenant_owned!(\n".len()..];
    let end = body.find(");").unwrap();
    body[..end]
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Tenant-owned rows are read, updated and deleted only through `TenantCtx` (which adds the
/// tenant filter); bare `Entity::find()` and friends are allowed only in `src/tenancy/`, where
/// tenants are resolved.
#[test]
fn tenant_rows_are_only_queried_through_a_tenant_context() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let owned = tenant_owned_modules(root);
    assert!(owned.len() >= 18, "found {owned:?}");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut offenders = Vec::new();
    for file in files {
        if file.starts_with(root.join("src/tenancy")) || file.starts_with(root.join("src/entities"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for module in &owned {
                for op in [
                    "find()",
                    "find_by_id(",
                    "update_many()",
                    "delete_many()",
                    "delete_by_id(",
                ] {
                    let pattern = format!("{module}::Entity::{op}");
                    if line.contains(&pattern) {
                        offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "query tenant rows through TenantCtx:\n{}",
        offenders.join("\n")
    );
}

/// The crate's modules and who names whom, read from the source: enough of Rust's paths to
/// follow `use` trees, `crate::`/`super::`/`self::` paths, paths through a child module, and
/// re-exports (`pub use`, globs included) to the file that defines the name.
mod imports {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use regex::Regex;

    /// A module: its path from the crate root (`["pipeline", "turn"]`).
    pub type Module = Vec<String>;

    pub struct Graph {
        /// Each module's text, comments and string contents removed.
        text: BTreeMap<Module, String>,
        children: BTreeMap<Module, BTreeSet<String>>,
        reexports: BTreeMap<Module, BTreeMap<String, Module>>,
        globs: BTreeMap<Module, Vec<Module>>,
        /// Module → the modules it names.
        pub edges: BTreeMap<Module, BTreeSet<Module>>,
    }

    /// Source text without comments, with every string and char literal emptied (so neither a
    /// `//` in a URL nor a path in a message counts).
    fn strip(src: &str) -> String {
        let b = src.as_bytes();
        let mut out = String::with_capacity(src.len());
        let mut i = 0;
        while i < b.len() {
            let rest = &src[i..];
            if rest.starts_with("//") {
                i += rest.find('\n').unwrap_or(rest.len());
            } else if rest.starts_with("/*") {
                i += rest.find("*/").map_or(rest.len(), |e| e + 2);
            } else if let Some(hashes) = raw_string_start(rest) {
                let close = format!("\"{}", "#".repeat(hashes));
                let body = 2 + hashes;
                i += body
                    + rest[body..]
                        .find(&close)
                        .map_or(rest.len(), |e| e + close.len());
                out.push_str("\"\"");
            } else if b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            } else if b[i] == b'\'' && is_char_literal(rest) {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            } else {
                let c = rest.chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }

    /// `r"`, `r#"`, `br##"`...: how many `#`.
    fn raw_string_start(s: &str) -> Option<usize> {
        let s = s.strip_prefix('b').unwrap_or(s);
        let s = s.strip_prefix('r')?;
        let hashes = s.bytes().take_while(|&c| c == b'#').count();
        (s.as_bytes().get(hashes) == Some(&b'"')).then_some(hashes)
    }

    /// `'a'`, `'\n'`, `'"'` rather than the lifetime `'a`.
    fn is_char_literal(s: &str) -> bool {
        let mut chars = s.chars().skip(1);
        match chars.next() {
            Some('\\') => true,
            Some(_) => chars.next() == Some('\''),
            None => false,
        }
    }

    /// The paths a `use` tree names, each with the name it binds (`*` for a glob).
    fn use_paths(tree: &str) -> Vec<(Vec<String>, String)> {
        fn split_top(s: &str) -> Vec<&str> {
            let (mut depth, mut start, mut items) = (0, 0, Vec::new());
            for (i, c) in s.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&s[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            items.push(&s[start..]);
            items
        }
        fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
            for item in split_top(tree) {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let segs = |s: &str| -> Vec<String> {
                    s.split("::")
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(String::from)
                        .collect()
                };
                if let Some(open) = item.find('{') {
                    let mut inner = prefix.to_vec();
                    inner.extend(segs(&item[..open]));
                    walk(&inner, &item[open + 1..item.rfind('}').unwrap()], out);
                    continue;
                }
                let (path, alias) = match item.split_once(" as ") {
                    Some((p, a)) => (p, Some(a.trim().to_string())),
                    None => (item, None),
                };
                let mut full = prefix.to_vec();
                full.extend(segs(path));
                let name = alias.or_else(|| full.last().cloned()).unwrap_or_default();
                out.push((full, name));
            }
        }
        let mut out = Vec::new();
        let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
        walk(&[], &tree, &mut out);
        out
    }

    impl Graph {
        pub fn read(src: &Path) -> Graph {
            let mut files = Vec::new();
            super::rust_files(src, &mut files);
            let mut text = BTreeMap::new();
            for file in files {
                let rel = file.strip_prefix(src).unwrap().with_extension("");
                let mut module: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                match module.last().map(String::as_str) {
                    Some("main") if module.len() == 1 => continue,
                    Some("mod") | Some("lib") => {
                        module.pop();
                    }
                    _ => {}
                }
                text.insert(module, strip(&std::fs::read_to_string(&file).unwrap()));
            }
            let child = Regex::new(r"\bmod\s+(\w+)\s*;").unwrap();
            let pub_use = Regex::new(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);").unwrap();
            let mut graph = Graph {
                children: text
                    .iter()
                    .map(|(m, t)| {
                        (
                            m.clone(),
                            child.captures_iter(t).map(|c| c[1].into()).collect(),
                        )
                    })
                    .collect(),
                text,
                reexports: BTreeMap::new(),
                globs: BTreeMap::new(),
                edges: BTreeMap::new(),
            };
            for (module, t) in &graph.text {
                for c in pub_use.captures_iter(t) {
                    for (path, name) in use_paths(&c[1]) {
                        let Some(full) = graph.absolute(module, &path) else {
                            continue;
                        };
                        if name == "*" {
                            graph.globs.entry(module.clone()).or_default().push(full);
                        } else if name != "self" {
                            graph
                                .reexports
                                .entry(module.clone())
                                .or_default()
                                .insert(name, full);
                        }
                    }
                }
            }
            let uses = Regex::new(r"\buse\s+([^;]+);").unwrap();
            let paths = Regex::new(r"(?:^|[^\w:])(\w+(?:::\w+)+)").unwrap();
            let mut edges = BTreeMap::new();
            for (module, t) in &graph.text {
                // An inline `mod tests { use super::*; }` names its file's module.
                let (outer, tests) = match t.find("mod tests {") {
                    Some(at) => (&t[..at], &t[at..]),
                    None => (t.as_str(), ""),
                };
                let mut named: Vec<Vec<String>> = Vec::new();
                for c in uses.captures_iter(outer) {
                    named.extend(use_paths(&c[1]).into_iter().map(|(p, _)| p));
                }
                for c in paths.captures_iter(outer) {
                    named.push(c[1].split("::").map(String::from).collect());
                }
                for c in paths.captures_iter(tests) {
                    let mut p: Vec<String> = c[1].split("::").map(String::from).collect();
                    if p[0] == "super" {
                        p[0] = "self".into();
                    }
                    named.push(p);
                }
                let mut to = BTreeSet::new();
                for path in named {
                    let Some(full) = graph.absolute(module, &path) else {
                        continue;
                    };
                    let target = graph.resolve(&full, 0);
                    if !target.is_empty() && &target != module {
                        to.insert(target);
                    }
                }
                edges.insert(module.clone(), to);
            }
            graph.edges = edges;
            graph
        }

        /// `path` as written in `module`, from the crate root; `None` for other crates' paths.
        fn absolute(&self, module: &Module, path: &[String]) -> Option<Vec<String>> {
            let first = path.first()?;
            if first == "crate" {
                return Some(path[1..].to_vec());
            }
            if first == "super" || first == "self" {
                let mut at = module.clone();
                let mut rest = path;
                while let Some(seg) = rest.first().filter(|s| *s == "super" || *s == "self") {
                    if seg == "super" {
                        at.pop();
                    }
                    rest = &rest[1..];
                }
                at.extend(rest.iter().cloned());
                return Some(at);
            }
            if self.children.get(module)?.contains(first) {
                let mut at = module.clone();
                at.extend(path.iter().cloned());
                return Some(at);
            }
            None
        }

        /// The module whose file defines what `path` names, through re-exports.
        fn resolve(&self, path: &[String], depth: usize) -> Module {
            let mut at: Module = Vec::new();
            for (i, seg) in path.iter().enumerate() {
                let mut next = at.clone();
                next.push(seg.clone());
                if self.text.contains_key(&next) {
                    at = next;
                    continue;
                }
                if depth < 10 {
                    if let Some(target) = self.reexports.get(&at).and_then(|r| r.get(seg)) {
                        let mut full = target.clone();
                        full.extend(path[i + 1..].iter().cloned());
                        return self.resolve(&full, depth + 1);
                    }
                    let defines = Regex::new(&format!(
                        r"\b(?:struct|enum|fn|type|const|static|trait|union|macro_rules!)\s+{seg}\b"
                    ))
                    .unwrap();
                    for glob in self.globs.get(&at).into_iter().flatten() {
                        let module = self.resolve(glob, depth + 1);
                        if self.text.get(&module).is_some_and(|t| defines.is_match(t)) {
                            return module;
                        }
                    }
                }
                break;
            }
            at
        }

        /// The groups of two or more modules that name each other in a circle (Tarjan).
        pub fn circles(&self) -> Vec<Vec<Module>> {
            struct Walk<'a> {
                edges: &'a BTreeMap<Module, BTreeSet<Module>>,
                index: BTreeMap<&'a Module, usize>,
                low: BTreeMap<&'a Module, usize>,
                stack: Vec<&'a Module>,
                on_stack: BTreeSet<&'a Module>,
                found: Vec<Vec<Module>>,
            }
            impl<'a> Walk<'a> {
                fn visit(&mut self, v: &'a Module) {
                    let n = self.index.len();
                    self.index.insert(v, n);
                    self.low.insert(v, n);
                    self.stack.push(v);
                    self.on_stack.insert(v);
                    for w in self.edges.get(v).into_iter().flatten() {
                        if !self.index.contains_key(w) {
                            self.visit(w);
                            let low = self.low[v].min(self.low[w]);
                            self.low.insert(v, low);
                        } else if self.on_stack.contains(w) {
                            let low = self.low[v].min(self.index[w]);
                            self.low.insert(v, low);
                        }
                    }
                    if self.low[v] == self.index[v] {
                        let mut group = Vec::new();
                        loop {
                            let w = self.stack.pop().unwrap();
                            self.on_stack.remove(w);
                            group.push(w.clone());
                            if w == v {
                                break;
                            }
                        }
                        if group.len() > 1 {
                            group.sort();
                            self.found.push(group);
                        }
                    }
                }
            }
            let mut walk = Walk {
                edges: &self.edges,
                index: BTreeMap::new(),
                low: BTreeMap::new(),
                stack: Vec::new(),
                on_stack: BTreeSet::new(),
                found: Vec::new(),
            };
            for v in self.edges.keys() {
                if !walk.index.contains_key(v) {
                    walk.visit(v);
                }
            }
            walk.found
        }
    }

    pub fn name(m: &Module) -> String {
        m.join("/")
    }
}

/// No two files of the crate import each other, directly or through others: each room can be
/// read (and changed) knowing only what it imports. A parent module that its children need is
/// an index only (declarations and re-exports); what the children share lives in a file of
/// its own.
#[test]
fn no_import_circle_in_the_crate() {
    let graph = imports::Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        graph.edges.len() > 100,
        "read {} modules",
        graph.edges.len()
    );
    // The reading finds what it should: known imports are edges.
    let edge = |from: &str, to: &str| {
        let split = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        graph.edges[&split(from)].contains(&split(to))
    };
    assert!(edge("pipeline/turn", "pipeline/deliver"));
    assert!(edge("pipeline/converse", "conversation/engine"));
    assert!(
        edge("api/notices", "api/tags"),
        "through `pub use tags::ApiTags`"
    );
    assert!(
        edge("tenancy/routes", "tenancy/ctx"),
        "through `pub use ctx::*`"
    );
    let circles: Vec<String> = graph
        .circles()
        .iter()
        .map(|group| {
            let inside: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    graph.edges[from]
                        .iter()
                        .filter(|to| group.contains(to))
                        .map(move |to| {
                            format!("  {} -> {}", imports::name(from), imports::name(to))
                        })
                })
                .collect();
            format!("{} files:\n{}", group.len(), inside.join("\n"))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// `AppState` is composition only: the service's components are built in `app.rs` and each is
/// handed what it needs; only what drives the service from outside (the API, the HTTP routes,
/// the CLI, the eval harness) sees the whole.
#[test]
fn only_the_edges_of_the_service_see_the_app_state() {
    let graph = imports::Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let state = vec!["state".to_string()];
    let allowed = ["api", "http", "app", "cli", "eval"];
    let seen_by: Vec<String> = graph
        .edges
        .iter()
        .filter(|(_, to)| to.contains(&state))
        .map(|(from, _)| imports::name(from))
        .collect();
    assert!(seen_by.iter().any(|m| m.starts_with("api/")), "{seen_by:?}");
    let outside: Vec<&String> = seen_by
        .iter()
        .filter(|m| !allowed.contains(&m.split('/').next().unwrap()))
        .collect();
    assert!(
        outside.is_empty(),
        "these modules import the app state; hand them the component they need: {outside:?}"
    );
}

/// The configuration is the bottom of the crate: it declares the settings and merges their
/// sources; what each group may hold is checked by the module that owns it (`config::Check`),
/// so `config` imports nothing of the crate but itself.
#[test]
fn the_configuration_imports_nothing_above_it() {
    let graph = imports::Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let config: Vec<_> = graph
        .edges
        .iter()
        .filter(|(from, _)| from.first().is_some_and(|m| m == "config"))
        .collect();
    assert!(config.len() >= 2, "read {} config modules", config.len());
    let above: Vec<String> = config
        .iter()
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|m| m.first().is_none_or(|m| m != "config"))
                .map(move |m| format!("{} -> {}", imports::name(from), imports::name(m)))
        })
        .collect();
    assert!(above.is_empty(), "config imports the crate: {above:?}");
    let checked_in = |owner: &str| {
        graph.edges[&owner.split('/').map(String::from).collect::<Vec<_>>()]
            .iter()
            .any(|m| m.first().is_some_and(|m| m == "config"))
    };
    for owner in ["http", "db", "api/jwt", "llm", "channels/engagement"] {
        assert!(checked_in(owner), "{owner} checks its settings");
    }
}
