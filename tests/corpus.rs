//! A labelled corpus built at run time: the credential-file formats, the
//! multi-line contexts, encodings, archives and token formats keyburn is
//! meant to catch, next to the decoys it must not report (documented example
//! keys, placeholders, hashes, UUIDs, public keys, lockfile integrity,
//! base64 images, redactions, names in code). Every labelled line must be
//! found and no decoy reported; the run prints recall and precision
//! (`cargo test --test corpus -- --nocapture`).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;

use assert_cmd::Command;
use keyburn_responder::mock::{fake_github_token, fake_slack_token};
use serde_json::Value;

/// Deterministic random text for fake secrets.
struct Fake(u64);

impl Fake {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }

    fn alnum(&mut self, n: usize) -> String {
        self.from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            n,
        )
    }

    fn hex(&mut self, n: usize) -> String {
        self.from(b"0123456789abcdef", n)
    }

    /// A password as people pick them: letters, digits and punctuation.
    fn password(&mut self) -> String {
        let mut p = self.alnum(10);
        p.push_str(&self.from(b"!#%&*-_.", 1));
        p.push_str(&self.from(b"0123456789", 2));
        p
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A corpus file: its path, its text, and the 1-based lines that hold a
/// credential (none for a decoy).
struct Case {
    path: String,
    text: Vec<u8>,
    lines: Vec<usize>,
}

fn case(path: &str, text: String, lines: &[usize]) -> Case {
    Case {
        path: path.to_string(),
        text: text.into_bytes(),
        lines: lines.to_vec(),
    }
}

fn positives(f: &mut Fake) -> Vec<Case> {
    let pw = f.password();
    let mut v = vec![
        case(".netrc", format!("machine api.example.org\n  login deploy\n  password {pw}\n"), &[3]),
        case(".pgpass", format!("db.internal:5432:billing:app:{}\n", f.password()), &[1]),
        case(".git-credentials", format!("https://deploy:{}@git.example.org\n", f.password()), &[1]),
        case(".my.cnf", format!("[client]\nuser=root\npassword={}\n", f.password()), &[3]),
        case(".pypirc", format!("[pypi]\nusername = ops\npassword = {}\n", f.password()), &[3]),
        case(
            ".npmrc",
            format!("registry=https://npm.example.org/\n_auth={}\n", b64(format!("ci:{}", f.password()).as_bytes())),
            &[2],
        ),
        case(".s3cfg", format!("[default]\naccess_key = AKIA{}\nsecret_key = {}\n", f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), f.alnum(40)), &[2, 3]),
        case(".msmtprc", format!("account default\nhost smtp.example.org\nuser ops\npassword {}\n", f.password()), &[4]),
        case(
            "sitemanager.xml",
            format!("<FileZilla3>\n<Server><Host>ftp.example.org</Host><User>web</User><Pass encoding=\"base64\">{}</Pass></Server>\n</FileZilla3>\n", b64(f.password().as_bytes())),
            &[2],
        ),
        case("settings.xml", format!("<settings><servers>\n<server><id>releases</id><username>ci</username>\n<password>{}</password></server>\n</servers></settings>\n", f.password()), &[3]),
        case("gradle.properties", format!("org.gradle.jvmargs=-Xmx2g\nmavenPassword={}\n", f.password()), &[2]),
        case("kubeconfig", format!("apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    token: {}\n", f.alnum(40)), &[6]),
        case("prod.tfvars", format!("region = \"eu-west-1\"\ndb_password = \"{}\"\n", f.password()), &[2]),
        case("config/master.key", format!("{}\n", f.hex(32)), &[1]),
        case("wp-config.php", format!("<?php\ndefine('DB_NAME', 'wp');\ndefine('DB_PASSWORD', '{}');\n", f.password()), &[3]),
        case("app/settings.py", format!("DEBUG = False\nSECRET_KEY = '{}(%{}'\n", f.alnum(30), f.alnum(12)), &[2]),
        case(".env", format!("APP_NAME=shop\nAPP_KEY=base64:{}\nDB_PASSWORD={}\n", b64(f.alnum(32).as_bytes()), f.password()), &[2, 3]),
        case(
            "dump.sql",
            format!("INSERT INTO users (id, login, hash) VALUES (1, 'admin', '$2y$10${}');\n", f.from(b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 53)),
            &[1],
        ),
        case("scripts/deploy.sh", format!("#!/bin/sh\ncurl -u deploy:{} https://api.example.org/v1/release\n", f.password()), &[2]),
        // A weak password that spells its word is still a password.
        case("Jenkinsfile", format!("stage('publish') {{\n  sh 'curl -X PUT -u jfrog:{}{} https://repo.example.org/api/'\n}}\n", "Admin", "Password1"), &[2]),
        case(
            "scripts/call.sh",
            format!("curl -H \"Authorization: Basic {}\" https://api.example.org\n", b64(format!("ops:{}", f.password()).as_bytes())),
            &[1],
        ),
        case(
            "deploy/secret.yaml",
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {}\n", b64(f.password().as_bytes())),
            &[6],
        ),
        case(
            "deploy/app.yaml",
            format!("containers:\n  - name: app\n    env:\n      - name: DB_PASSWORD\n        value: \"{}\"\n", f.password()),
            &[5],
        ),
        case("client.py", format!("import smtplib\nserver.login(\"ops@example.org\", \"{}\")\n", f.password()), &[2]),
        case(
            "src/Db.java",
            format!("Connection c = DriverManager.getConnection(\n    \"jdbc:postgresql://db.internal/app\",\n    \"app\",\n    \"{}\");\n", f.password()),
            &[4],
        ),
        case("app/.npmrc", format!("//npm.corp.example/:_authToken={}\n", f.alnum(18)), &[1]),
        // Jenkins' braced base64, drawn without `+` and `/` (as about one
        // secret in eleven is).
        case(
            "jenkins_home/credentials.xml",
            format!("<username>deploy</username>\n<password>{{AQAAABAAAAAQ{}}}</password>\n", f.alnum(44)),
            &[2],
        ),
        case("keys.env", format!("AWS_ACCESS_KEY_ID=AKIA{}\nAWS_SECRET_ACCESS_KEY={}\n", f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), f.alnum(40)), &[1, 2]),
        case("ci.yml", format!("env:\n  GITHUB_TOKEN: {}\n", fake_github_token()), &[2]),
        case("notify.py", format!("SLACK = \"{}\"\n", fake_slack_token()), &[1]),
        case("ai.env", format!("NVIDIA_API_KEY=nvapi-{}\n", f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", 64)), &[1]),
        case("swarm.sh", format!("docker swarm join --token SWMTKN-1-{}-{} 10.0.0.5:2377\n", f.from(b"abcdefghijklmnopqrstuvwxyz0123456789", 50), f.from(b"abcdefghijklmnopqrstuvwxyz0123456789", 25)), &[1]),
        case(
            "certs/server.pem",
            format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", (0..20).map(|_| f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64)).collect::<Vec<_>>().join("\n")),
            &[1],
        ),
        case(
            "escaped.json",
            format!("{{\"key\": \"-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----\\n\"}}\n", (0..12).map(|_| f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 64)).collect::<Vec<_>>().join("\\n")),
            &[1],
        ),
    ];
    // An archive: the line is the member's.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("config/.env.prod", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(format!("NODE_ENV=production\nDB_PASSWORD={}\n", f.password()).as_bytes())
        .unwrap();
    v.push(Case {
        path: "release.zip".into(),
        text: w.finish().unwrap().into_inner(),
        lines: vec![2],
    });
    v
}

fn decoys(f: &mut Fake) -> Vec<Case> {
    vec![
        case("docs/aws.md", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n".into(), &[]),
        case("docs/env.example", "DB_PASSWORD=changeme\nAPI_KEY=${API_KEY}\nSECRET=<your-secret-here>\nGITHUB_API_KEY=\nDYNATRACE_API_KEY=\n".into(), &[]),
        case("src/ids.py", format!("REQUEST_ID = \"{}-{}-4{}-a{}-{}\"\n", f.hex(8), f.hex(4), f.hex(3), f.hex(3), f.hex(12)), &[]),
        case("CHANGES.md", format!("Fixed in commit {}.\n", f.hex(40)), &[]),
        case("package-lock.json", format!("{{\"node_modules/x\": {{\"integrity\": \"sha512-{}==\"}}}}\n", f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 86)), &[]),
        case("web/logo.css", format!(".logo {{ background: url(data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{}); }}\n", f.alnum(200)), &[]),
        case("keys/id_rsa.pub", format!("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{} ops@example.org\n", f.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 340)), &[]),
        case("logs/redacted.log", "token: ghp_************************************\nAuthorization: Bearer [Filtered]\n".into(), &[]),
        case("requirements.txt", "async-timeout==4.0.3\ntiktoken==0.7.0\n".into(), &[]),
        case("src/model.py", "tokenizer = AutoTokenizer.from_pretrained(\"gpt2\")\nclient_secret: RealtimeSessionClientSecret\napi_key = _api_key_explicitly_provided\n".into(), &[]),
        case("profile/logins.meta.json", "{\"timePasswordChanged\": 1515902314887, \"timesUsed\": 3}\n".into(), &[]),
        case("mvnw", "MVNW_REPOURL=${MVNW_PASSWORD:+has-password}\n".into(), &[]),
        case("README.md", "Export `SLACK_TOKEN=xoxb-your-token-here` and run `make`.\n".into(), &[]),
        case("assets/manifest.txt", format!("icons/video_box.ico-{}.png\n", f.hex(32)), &[]),
        case("shadow.example", "root:*:19000:0:99999:7:::\nnobody:!:19000::::::\n".into(), &[]),
        // A label and its translation (the key assembled, so that this
        // file is not a finding of its own).
        case("src/main/resources/Messages_da.properties", format!("{0}=Adgangskode\nEmpty{0}=Tom-adgangskode-afvist\n", "Pass".to_owned() + "word"), &[]),
        case("locales/fr.json", format!("{{\"login\": {{\"{}\": \"Mot-de-passe-oubli\u{e9}\"}}}}\n", "pass".to_owned() + "word"), &[]),
        // A translation bundle in JavaScript.
        case("static/lang/es.js", format!("{{\"{}\":\"Contrase\u{f1}a\",\"Username\":\"Usuario\"}}\n", "Pass".to_owned() + "word"), &[]),
        // Page cursors in an SDK's fixtures.
        case(
            "tests/resources/alerts_list.json",
            format!("{{\"next_page_url\": \"https://api.example.org/v1/Alerts?PageSize=50&PageToken=PA{}\"}}\n", f.hex(32)),
            &[],
        ),
        case("tests/fixtures/list.json", format!("{{\"Items\": [], \"NextToken\": \"{}\"}}\n", f.alnum(48)), &[]),
        // Dotted names: an editor mode's syntax scopes, another Terraform
        // resource's attribute.
        case(
            "static/ace/mode-actionscript.js",
            "{ token: 'support.class.actionscript.2', regex: '\\b(?:Array)\\b' },\n{ defaultToken: 'string.quoted.double.actionscript.2' }\n".into(),
            &[],
        ),
        case("infra/db.tf", format!("resource \"x\" \"db\" {{\n  {0} = random_{0}.db-admin-{0}.result\n}}\n", "pass".to_owned() + "word"), &[]),
        // RFC 6749's example response, copied into every OAuth library.
        case(
            "docs/oauth.md",
            format!("{{\"access_{0}\":\"2YotnFZFEjr1zCsicMWpAA\",\"refresh_{0}\":\"tGzv3JOkF0XG5Qx2TlKWIA\"}}\n", "token"),
            &[],
        ),
        case("web/swagger-ui.js", format!("{}Input: '.basic_auth__{}',\n", "password", "password"), &[]),
        case("docs/advanced.rst", "auth = HTTPBasicAuth('fake@example.com', 'not_a_real_password')\n".into(), &[]),
        case("audit/results.json", format!("\"url\": \"http://%7BENCODED_USER%7D:%7BENCODED_{}%7D@request.com\"\n", "PASSWORD"), &[]),
        // Code about credentials, and values made at run time.
        case(
            "vendor/scanner.go",
            format!("\t// {0}:uid:gid:gecos:home:shell\n\t{1}.style = yaml_FOLDED_SCALAR_STYLE\n", "password", "token"),
            &[],
        ),
        case("lib/nacl.js", format!("nacl.box.{}KeyLength = crypto_box_SECRETKEYBYTES;\n", "secret"), &[]),
        case("test/run.sh", format!("docker run -e MYSQL_ROOT_{}=\"test-$RANDOM-password-$RANDOM-$$\" mysql\n", "PASSWORD"), &[]),
        case("docs/tag-details.md", format!("| ME_CONFIG_BASICAUTH_{}= VCAP_APP_HOST=0.0.0.0 |\n", "PASSWORD"), &[]),
        // An SDK's generated reference: examples spelled out, elided or
        // given as a choice, and a client's cache-busting header.
        case(
            "docs/reference/rds.rst",
            format!(
                "  MasterUser{0}='mynew{1}',\n  {0}ResetRequired=True|False\n  'PurchaseToken': 'eyJ2IjoiMSIsInMiOjEsImMiOi...'\n  Postman-Token: {2}-{3}-{4}-{5}-{6}\n",
                "Password", "password", f.hex(8), f.hex(4), f.hex(4), f.hex(4), f.hex(12)
            ),
            &[],
        ),
    ]
}

#[test]
fn the_labelled_corpus_is_found_whole_and_its_decoys_left_alone() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut f = Fake(0x5eed_c0de_2026_1201);
    let pos = positives(&mut f);
    let dec = decoys(&mut f);
    for c in pos.iter().chain(&dec) {
        let p = dir.path().join(&c.path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, &c.text).unwrap();
    }
    let out = Command::cargo_bin("keyburn")
        .unwrap()
        .current_dir(dir.path())
        .args(["scan", ".", "-f", "json", "--no-progress", "--no-ignore"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: BTreeSet<(String, usize)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let path = x["path"].as_str().unwrap();
            // A member's line, under the archive's path.
            let path = path.split('!').next().unwrap().to_string();
            (path, x["line"].as_u64().unwrap() as usize)
        })
        .collect();
    let want: BTreeSet<(String, usize)> = pos
        .iter()
        .flat_map(|c| c.lines.iter().map(|&l| (c.path.clone(), l)))
        .collect();
    let hit = want.intersection(&found).count();
    let missed: Vec<_> = want.difference(&found).collect();
    let extra: Vec<_> = found.difference(&want).collect();
    let recall = hit as f64 / want.len() as f64;
    let precision = hit as f64 / found.len().max(1) as f64;
    eprintln!(
        "corpus: {} labelled lines in {} files, {} decoy files: recall {recall:.3}, precision {precision:.3}",
        want.len(),
        pos.len(),
        dec.len()
    );
    assert!(missed.is_empty(), "missed: {missed:?}");
    assert!(extra.is_empty(), "reported outside the labels: {extra:?}");
}
