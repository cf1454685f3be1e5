//! Engine throughput on synthetic source-like text, with and without
//! secrets, and the cost of building an engine (the floor of a one-file scan).
//! Run: `cargo bench -p keyburn-scanner --bench engine` (add
//! `--features hyperscan` to compare both engines, and
//! `KEYBURN_BENCH_TREE=DIR` to add a real tree held in memory).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::Path;

use keyburn_scanner::engine::{EngineKind, Scratch};
use keyburn_scanner::{Engine, EngineBuilder, RuleSet};

/// About `size` bytes of code-like text: identifiers, assignments, URLs and
/// the words that generic rules key on, as real trees have them.
fn corpus(size: usize, with_secrets: bool) -> Vec<u8> {
    let lines = [
        "static int parse_token(struct parser *p, const char *key, size_t len)\n",
        "    if (!strcmp(key, \"password\")) return config_password(p);\n",
        "    url = \"https://example.com/api/v1/items?page=2\";\n",
        "    /* the secret sauce: keep the token list sorted */\n",
        "    for (i = 0; i < nr; i++) total += weights[i] * values[i];\n",
        "    api_key = lookup_env(\"SERVICE_API_KEY\");\n",
        "- Authorization headers are passed through unchanged.\n",
    ];
    let mut out = Vec::with_capacity(size + 200);
    let mut i = 0usize;
    while out.len() < size {
        out.extend_from_slice(lines[i % lines.len()].as_bytes());
        if with_secrets && i.is_multiple_of(997) {
            out.extend_from_slice(b"AWS_ACCESS_KEY_ID=AKIA");
            out.extend_from_slice(b"Q7XK2M4PZ6RB3TVN\n");
        }
        i += 1;
    }
    out
}

/// Every engine this build has, built on the built-in rules.
fn engines() -> Vec<(&'static str, Engine)> {
    EngineKind::compiled_in()
        .iter()
        .map(|&k| {
            let e = EngineBuilder::new(RuleSet::builtin())
                .kind(k)
                .build()
                .unwrap();
            (k.as_str(), e)
        })
        .collect()
}

/// The text files under `dir` (NUL-free, under 1 MiB), up to `limit` bytes:
/// the engine's input without the cost of reading it.
fn load_tree(dir: &Path, limit: usize, out: &mut Vec<Vec<u8>>, total: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if *total >= limit {
            return;
        }
        if p.is_dir() {
            load_tree(&p, limit, out, total);
        } else if let Ok(data) = std::fs::read(&p) {
            if data.len() < 1 << 20 && !data.contains(&0) {
                *total += data.len();
                out.push(data);
            }
        }
    }
}

fn throughput(c: &mut Criterion) {
    let mut inputs: Vec<(String, Vec<Vec<u8>>)> = [false, true]
        .into_iter()
        .map(|with_secrets| {
            let name = if with_secrets {
                "code-with-secrets"
            } else {
                "code"
            };
            (format!("{name}/4MiB"), vec![corpus(4 << 20, with_secrets)])
        })
        .collect();
    // KEYBURN_BENCH_TREE=DIR adds the files of a real tree (the first 256 MB
    // of the git/git release snapshots that benches/compare builds).
    if let Some(dir) = std::env::var_os("KEYBURN_BENCH_TREE") {
        let (mut files, mut total) = (Vec::new(), 0);
        load_tree(Path::new(&dir), 256 << 20, &mut files, &mut total);
        inputs.push((format!("tree/{}MB", total >> 20), files));
    }
    let mut group = c.benchmark_group("scan");
    for (kind, engine) in engines() {
        for (name, files) in &inputs {
            let bytes: usize = files.iter().map(Vec::len).sum();
            group.throughput(Throughput::Bytes(bytes as u64));
            group.bench_with_input(BenchmarkId::new(kind, name), files, |b, files| {
                let mut scratch = Scratch::default();
                let mut out = Vec::new();
                b.iter(|| {
                    out.clear();
                    for f in files {
                        engine.scan_into(Some("src/file.c"), f, &mut scratch, &mut out);
                    }
                    out.len()
                })
            });
        }
    }
    group.finish();
}

fn startup(c: &mut Criterion) {
    c.bench_function("load builtin rules + build engine", |b| {
        b.iter(|| Engine::new(RuleSet::builtin()).unwrap())
    });
}

criterion_group!(benches, throughput, startup);
criterion_main!(benches);
