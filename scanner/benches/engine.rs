//! Engine throughput on synthetic source-like text, with and without
//! secrets, and the cost of building an engine (the floor of a one-file scan).
//! Run: `cargo bench -p keyburn-scanner --bench engine`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keyburn_scanner::engine::Scratch;
use keyburn_scanner::{Engine, RuleSet};

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
        if with_secrets && i % 997 == 0 {
            out.extend_from_slice(b"AWS_ACCESS_KEY_ID=AKIA");
            out.extend_from_slice(b"Q7XK2M4PZ6RB3TVN\n");
        }
        i += 1;
    }
    out
}

fn throughput(c: &mut Criterion) {
    let engine = Engine::new(RuleSet::builtin()).unwrap();
    let mut group = c.benchmark_group("scan");
    for with_secrets in [false, true] {
        let data = corpus(4 << 20, with_secrets);
        group.throughput(Throughput::Bytes(data.len() as u64));
        let name = if with_secrets {
            "code-with-secrets"
        } else {
            "code"
        };
        group.bench_with_input(BenchmarkId::new(name, "4MiB"), &data, |b, data| {
            let mut scratch = Scratch::default();
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                engine.scan_into(Some("src/file.c"), data, &mut scratch, &mut out);
                out.len()
            })
        });
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
