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
