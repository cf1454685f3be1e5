//! Embeds every `rules/*.toml` file of the workspace into the library, so that
//! adding a rule file needs no code change, and with the `hyperscan`
//! feature finds the Hyperscan (or Vectorscan) library through pkg-config. The files are converted to JSON
//! here: parsing JSON at start-up costs a fraction of lexing TOML, and a
//! one-file scan (the pre-commit hook) pays that cost every time. The rules'
//! examples and counterexamples, a third of the text and never read by a
//! scan, are set apart in one table of their own.
use std::{env, fs, path::PathBuf};

fn main() {
    #[cfg(feature = "hyperscan")]
    link_hyperscan();
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("rules/ directory next to the scanner crate")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::from("pub(crate) const EMBEDDED: &[(&str, &str)] = &[\n");
    // Provider tables apart: a scan never reads them, so they are parsed
    // only when a check is looked up.
    let mut providers = String::from("pub(crate) const EMBEDDED_PROVIDERS: &[(&str, &str)] = &[\n");
    let mut examples = serde_json::Map::new();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        let text = fs::read_to_string(f).unwrap();
        let mut table: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid TOML: {e}", f.display()));
        for rule in table
            .get_mut("rule")
            .and_then(|r| r.as_array_mut())
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_table_mut())
        {
            let mut take = |key: &str| serde_json::to_value(rule.remove(key)).unwrap();
            let cases = serde_json::json!([take("examples"), take("counterexamples")]);
            if let Some(id) = rule.get("id").and_then(|id| id.as_str()) {
                examples.insert(id.to_string(), cases);
            }
        }
        if let Some(p) = table.remove("provider") {
            let json = serde_json::to_string(&p).unwrap();
            providers.push_str(&format!("    ({name:?}, {json:?}),\n"));
        }
        let json = serde_json::to_string(&table).unwrap();
        out.push_str(&format!("    ({name:?}, {json:?}),\n"));
    }
    out.push_str("];\n");
    providers.push_str("];\n");
    out.push_str(&providers);
    let examples = serde_json::to_string(&examples).unwrap();
    out.push_str(&format!(
        "pub(crate) const EMBEDDED_EXAMPLES: &str = {examples:?};\n"
    ));
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("embedded_rules.rs"),
        out,
    )
    .unwrap();
}

/// Link `libhs` where pkg-config says it is (Debian: libhyperscan-dev or
/// libvectorscan-dev), rather than hoping the linker finds `-lhs`.
#[cfg(feature = "hyperscan")]
fn link_hyperscan() {
    if let Err(e) = pkg_config::Config::new().probe("libhs") {
        panic!(
            "the hyperscan feature needs the Hyperscan or Vectorscan library and its \
             pkg-config file (Debian: apt-get install libhyperscan-dev pkg-config): {e}"
        );
    }
}
