//! Embed every file under `prompts/` in the binary, so a template added there needs no Rust
//! change and a deployed binary needs no prompts folder beside it.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let prompts = root.join("prompts");
    println!("cargo:rerun-if-changed=prompts");
    let mut files = Vec::new();
    collect(&prompts, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Every file under `prompts/`: (path relative to `prompts/`, contents).\npub static PROMPT_FILES: &[(&str, &str)] = &[\n",
    );
    for file in files {
        let rel = file
            .strip_prefix(&prompts)
            .expect("under prompts")
            .to_string_lossy()
            .replace('\\', "/");
        // Resolved when the crate compiles, not here: a build cache shared by checkouts at
        // other paths may reuse this file, and must not read another checkout's prompts.
        code.push_str(&format!(
            "    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),\n",
            format!("/prompts/{rel}")
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("prompt_files.rs");
    std::fs::write(out, code).expect("write prompt_files.rs");
}
