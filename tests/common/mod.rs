//! Shared helpers for the end-to-end tests: run the real `hub` and `spoke`
//! binaries in a fresh directory and read their JSON output.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
/// Whether `python3` can import `module`; when it cannot, fails the test
/// (CI installs it) unless EUROCOMPLY_SKIP_PYTHON_INTEROP=1 says to skip.
pub fn python_has(module: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("EUROCOMPLY_SKIP_PYTHON_INTEROP").as_deref() != Ok("1") {
        panic!("python3 cannot import {module}: run `pip install {install}` (ci/test.sh does) or set EUROCOMPLY_SKIP_PYTHON_INTEROP=1");
    }
    ok
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Spawns a server that prints `{"listening": URL}` first; returns it and the URL.
pub fn listening(mut cmd: Command) -> (Child, String) {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Child(child);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad ready line {line:?}: {e}"));
    (child, v["listening"].as_str().unwrap().to_string())
}

/// A child process killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn ok(self) -> serde_json::Value {
        assert!(
            self.out.status.success(),
            "command failed: {}\n{}",
            String::from_utf8_lossy(&self.out.stderr),
            String::from_utf8_lossy(&self.out.stdout)
        );
        serde_json::from_slice(&self.out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Asserts failure with the given error kind and returns the message.
    pub fn fails_with(self, kind: &str) -> String {
        assert!(
            !self.out.status.success(),
            "expected failure {kind}, got success: {}",
            String::from_utf8_lossy(&self.out.stdout)
        );
        let stderr = String::from_utf8_lossy(&self.out.stderr);
        let line = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON error in: {stderr}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["error"]["kind"], kind, "wrong error: {line}");
        v["error"]["message"].as_str().unwrap().to_string()
    }
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(bin);
        cmd.arg("--json").args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Run {
            out: cmd.output().unwrap(),
        }
    }

    pub fn hub(&self, args: &[&str]) -> Run {
        Self::run(env!("CARGO_BIN_EXE_hub"), args, &[])
    }

    pub fn hub_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        Self::run(env!("CARGO_BIN_EXE_hub"), args, envs)
    }

    pub fn spoke(&self, args: &[&str]) -> Run {
        Self::run(env!("CARGO_BIN_EXE_spoke"), args, &[])
    }

    /// An operator's age key made by `age-keygen` at `name`: (key file, recipient).
    pub fn age_key(&self, name: &str) -> (String, String) {
        let path = self.s(name);
        let out = Command::new("age-keygen")
            .args(["-o", &path])
            .output()
            .expect("age-keygen is needed (apt-get install age; ci/setup.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_string();
        (path, recipient)
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Creates a pack source directory with `files` (relative path → content).
    pub fn pack_src(
        &self,
        rel: &str,
        name: &str,
        version: &str,
        files: &[(&str, &[u8])],
    ) -> String {
        let dir = self.path(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("pack.json"),
            format!(
                r#"{{"name":"{name}","version":"{version}","type":"intelligence","handler_vm_version":"^1.0.0","trust_tier":"verified","safe_auto_update":true}}"#
            ),
        )
        .unwrap();
        for (p, content) in files {
            let f = dir.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, content).unwrap();
        }
        dir.display().to_string()
    }

    /// `hub init` of `repo`/`keys` in this env.
    pub fn init_repo(&self, extra: &[&str]) {
        let mut args = vec!["init", "--repo", "repo", "--keys", "keys"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == "repo" || *a == "keys" {
                    self.s(a)
                } else {
                    a.to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hub(&args).ok();
    }

    /// Builds and publishes a pack source; returns its CID.
    pub fn build_publish(&self, src: &str, out: &str, extra: &[&str]) -> String {
        let built = self
            .hub(&["pack", "build", src, "--out", &self.s(out)])
            .ok();
        self.publish(&self.s(out), extra);
        built["cid"].as_str().unwrap().to_string()
    }

    /// Runs `hub` with `base` then `extra` arguments and expects success.
    fn hub_ok(&self, base: &[&str], extra: &[&str]) -> serde_json::Value {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        self.hub(&args).ok()
    }

    /// `hub publish` of a bundle file into this env's repository.
    pub fn publish(&self, bundle: &str, extra: &[&str]) {
        let (repo, keys) = (self.s("repo"), self.s("keys"));
        self.hub_ok(
            &["publish", "--repo", &repo, "--keys", &keys, bundle],
            extra,
        );
    }

    /// `hub product build` of `manifest` against this env's repository, then publish.
    pub fn product_publish(&self, manifest: &str, bundle: &str, extra: &[&str]) {
        let repo = self.s("repo");
        self.hub_ok(
            &[
                "product", "build", manifest, "--repo", &repo, "--out", bundle,
            ],
            extra,
        );
        self.publish(bundle, &[]);
    }

    /// `hub rotate-key --role ROLE` on this env's repository.
    pub fn rotate(&self, role: &str) -> Run {
        self.hub(&[
            "rotate-key",
            "--repo",
            &self.s("repo"),
            "--keys",
            &self.s("keys"),
            "--role",
            role,
        ])
    }

    pub fn export(&self, to: &str, extra: &[&str]) -> serde_json::Value {
        let mut args = vec![
            "export".to_string(),
            "--repo".into(),
            self.s("repo"),
            "--to".into(),
            self.s(to),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.hub(&args).ok()
    }

    pub fn spoke_init(&self, data: &str) -> serde_json::Value {
        self.spoke(&[
            "init",
            "--data",
            &self.s(data),
            "--trust",
            &self.s("repo/metadata/1.root.json"),
        ])
        .ok()
    }

    pub fn import(&self, data: &str, medium: &str) -> Run {
        self.spoke(&["import", "--data", &self.s(data), &self.s(medium)])
    }

    /// Starts `hub serve` on this env's repository (port chosen by the OS);
    /// returns the process (killed on drop) and its URL.
    pub fn hub_serve(&self, extra: &[&str]) -> (Child, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub"));
        cmd.args([
            "--json",
            "serve",
            "--repo",
            &self.s("repo"),
            "--addr",
            "127.0.0.1:0",
        ])
        .args(extra);
        listening(cmd)
    }

    /// Starts `spoke serve --http` on loopback for the data directory `data`
    /// (a path); returns the process (killed on drop) and its URL.
    pub fn spoke_serve(&self, data: &str, extra: &[&str]) -> (Child, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spoke"));
        cmd.args([
            "--json",
            "serve",
            "--data",
            data,
            "--addr",
            "127.0.0.1:0",
            "--http",
        ])
        .args(extra);
        listening(cmd)
    }

    /// A test CA (`ca.pem`) and a server certificate it signed for
    /// 127.0.0.1 (`cert.pem`, `key.pem`), made with openssl.
    pub fn test_cert(&self) {
        let openssl = |args: &[&str]| {
            let st = Command::new("openssl")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl is needed to make test certificates (apt-get install openssl)");
            assert!(st.success(), "openssl {args:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let (ca, ca_key, csr, cert, key, ext) = (
            self.s("ca.pem"),
            self.s("ca.key"),
            self.s("server.csr"),
            self.s("cert.pem"),
            self.s("key.pem"),
            self.s("server.ext"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-days",
            "1",
            "-subj",
            "/CN=eurocomply test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ]);
        openssl(&args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr]);
        openssl(&args);
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
    }

    /// Runs `spoke` with `input` on standard input.
    pub fn spoke_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_spoke"))
            .arg("--json")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run {
            out: child.wait_with_output().unwrap(),
        }
    }

    /// Administrators `names` in the data directory `data` (a path), each
    /// signing in with `password` (before a LEGAL_HOLD, which refuses them).
    #[allow(dead_code)]
    pub fn add_admins(&self, data: &str, names: &[&str], password: &str) {
        for name in names {
            self.spoke_stdin(
                &[
                    "users", "add", "--data", data, "--name", name, "--role", "admin",
                ],
                &format!("{password}\n"),
            )
            .ok();
        }
    }

    /// Releases the LEGAL_HOLD of `data` (a path) to `to` as two
    /// administrators made by [`Env::add_admins`] (`first`, then `second`),
    /// checking that the first step alone changes nothing.
    #[allow(dead_code)]
    pub fn release_hold(
        &self,
        data: &str,
        admins: [&str; 2],
        password: &str,
        to: &str,
        reason: &str,
    ) {
        let step = |admin: &str| {
            self.spoke_stdin(
                &[
                    "lifecycle",
                    "--data",
                    data,
                    "--set",
                    to,
                    "--reason",
                    reason,
                    "--as",
                    admin,
                ],
                &format!("{password}\n"),
            )
            .ok()
        };
        let asked = step(admins[0]);
        assert_eq!(
            (&asked["result"], &asked["state"]),
            (
                &serde_json::json!("release_requested"),
                &serde_json::json!("LEGAL_HOLD")
            ),
            "{asked}"
        );
        let done = step(admins[1]);
        assert_eq!(
            (&done["result"], &done["state"]),
            (&serde_json::json!("changed"), &serde_json::json!(to)),
            "{done}"
        );
    }

    /// One user per role in the data directory `data` (a path), each named
    /// as its role and signing in with `password`.
    pub fn add_role_users(&self, data: &str, password: &str) {
        for role in appliance::auth::ROLES {
            self.spoke_stdin(
                &[
                    "users",
                    "add",
                    "--data",
                    data,
                    "--name",
                    role.as_str(),
                    "--role",
                    role.as_str(),
                ],
                &format!("{password}\n"),
            )
            .ok();
        }
    }

    /// Builds and publishes the product `manifest` (a path) with a licence
    /// on `plan`, until 2099-12-31, for the spoke at `data` (a path).
    pub fn publish_licensed_product(&self, manifest: &Path, data: &str, plan: &str) {
        let did = self.spoke(&["identity", "--data", data]).ok()["did"]
            .as_str()
            .unwrap()
            .to_string();
        self.product_publish(
            &manifest.display().to_string(),
            &self.s("product.bundle"),
            &[
                "--licence-for",
                &did,
                "--plan",
                plan,
                "--expires",
                "2099-12-31",
            ],
        );
    }

    /// A repository with the real example packs, built and signed by the hub.
    pub fn publish_examples(&self) {
        self.init_repo(&[]);
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("bundles/examples/packs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("pack.json").is_file())
            .collect();
        dirs.sort();
        for (i, dir) in dirs.iter().enumerate() {
            self.build_publish(&dir.display().to_string(), &format!("p{i}.bundle"), &[]);
        }
    }

    /// A repository with one published pack of `bytes` random bytes (from
    /// `seed`) and a fresh medium `m` exported from it.
    pub fn one_pack_medium(&self, bytes: usize, seed: u64) {
        self.init_repo(&[]);
        let src = self.pack_src(
            "src/v1",
            "@eu/annex-data",
            "1.0.0",
            &[("tables/annex.txt", &payload(bytes, seed))],
        );
        self.build_publish(&src, "v1.bundle", &[]);
        self.export("m", &[]);
    }

    /// A spoke at `data` with the real example packs installed (built and
    /// signed by the hub, carried on a medium) and the sample products and
    /// safety reports added.
    pub fn sample_spoke(&self, data: &str) -> String {
        self.publish_examples();
        self.stock_spoke(data)
    }

    /// A spoke at `data` with everything published so far installed from a
    /// medium, and the sample products and safety reports added.
    #[allow(dead_code)]
    pub fn stock_spoke(&self, data: &str) -> String {
        let examples = root().join("bundles/examples");
        self.export("usb", &[]);
        self.spoke_init(data);
        self.import(data, "usb").ok();
        let d = self.s(data);
        let samples = examples.join("samples");
        self.spoke(&[
            "entity",
            "add",
            "--data",
            &d,
            &samples.join("products.json").display().to_string(),
        ])
        .ok();
        for (entity, file, expires) in [
            ("hydra-serum", "hydra-serum-cpsr.txt", Some("2099-12-31")),
            ("mystery-balm", "mystery-balm-cpsr.txt", None),
        ] {
            self.doc_add(&d, "cpsr", Some(entity), expires, &samples.join(file))
                .ok();
        }
        d
    }

    /// `spoke doc add` of `file` to the data directory `data` (a path).
    pub fn doc_add(
        &self,
        data: &str,
        kind: &str,
        entity: Option<&str>,
        expires: Option<&str>,
        file: &Path,
    ) -> Run {
        let mut args = vec!["doc", "add", "--data", data, "--kind", kind];
        if let Some(e) = entity {
            args.extend(["--entity", e]);
        }
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        let file = file.display().to_string();
        args.push(&file);
        self.spoke(&args)
    }

    /// The action of every audit entry of the data directory `data` (a
    /// path), oldest first.
    pub fn audit_actions(&self, data: &str) -> Vec<String> {
        self.spoke(&["audit", "list", "--data", data])
            .ok()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn packs(&self, data: &str) -> Vec<(String, String, String)> {
        let v = self.spoke(&["packs", "--data", &self.s(data)]).ok();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["version"].as_str().unwrap().into(),
                    p["cid"].as_str().unwrap().into(),
                )
            })
            .collect()
    }
}

/// A minimal, valid one-page PDF showing `text` (Helvetica), with a correct
/// cross-reference table, as office software would write it.
pub fn pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    pdf_with_contents(stream.as_bytes(), "")
}

/// A PDF decompression bomb: a page whose one FlateDecode content stream
/// inflates to `inflated` bytes of drawing operators (compressed ~700:1).
pub fn pdf_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let op = b"0 0 Td ";
    for _ in 0..inflated / op.len() {
        z.write_all(op).unwrap();
    }
    pdf_with_contents(&z.finish().unwrap(), " /Filter /FlateDecode")
}

/// A one-page PDF with `contents` as its content stream (`filter` goes
/// into the stream's dictionary).
fn pdf_with_contents(contents: &[u8], filter: &str) -> Vec<u8> {
    let objects: [Vec<u8>; 5] = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        [
            format!("<< /Length {}{filter} >>\nstream\n", contents.len()).as_bytes(),
            contents,
            b"\nendstream",
        ]
        .concat(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A new version of the annexes pack: the example plus extra Annex II rows.
pub fn annexes_upgrade(env: &Env, version: &str, extra: &[(&str, &str)]) -> String {
    let src = root().join("bundles/examples/packs/eu-cosmetics-annexes");
    let dst = env.path(&format!("src/annexes-{version}"));
    std::fs::create_dir_all(dst.join("tables")).unwrap();
    for t in std::fs::read_dir(src.join("tables")).unwrap() {
        let t = t.unwrap().path();
        std::fs::copy(&t, dst.join("tables").join(t.file_name().unwrap())).unwrap();
    }
    let mut pack: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("pack.json")).unwrap()).unwrap();
    pack["version"] = version.into();
    std::fs::write(dst.join("pack.json"), pack.to_string()).unwrap();
    let annex_ii = dst.join("tables/annex_ii.json");
    let mut rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&annex_ii).unwrap()).unwrap();
    for (substance, cas) in extra {
        rows.push(serde_json::json!({"substance": substance, "cas": cas}));
    }
    std::fs::write(&annex_ii, serde_json::to_vec(&rows).unwrap()).unwrap();
    dst.display().to_string()
}

/// Builds and publishes the annexes pack at `src`, exports only it and imports it; returns the import report.
pub fn ship(env: &Env, d: &str, src: &str, out: &str) -> serde_json::Value {
    env.build_publish(src, out, &[]);
    let medium = format!("{out}-usb");
    env.export(&medium, &["--only", "@data/eu-cosmetics-annexes"]);
    env.spoke(&["import", "--data", d, &env.s(&medium)]).ok()
}

/// Writes a model bundle source directory (`model.json` + weights).
pub fn model_src(env: &Env, dir: &str, name: &str, version: &str, task: &str, seed: u64) -> String {
    let d = env.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    let format = if task == "embedding" {
        models::fixtures::write_tiny_embedder(&d).unwrap();
        "safetensors"
    } else {
        models::fixtures::write_tiny_generator(&d.join("tiny.gguf"), 4096, seed).unwrap();
        "gguf"
    };
    std::fs::write(
        d.join("model.json"),
        serde_json::json!({"name": name, "version": version, "task": task, "format": format,
               "source": "tests: random weights", "description": "tiny test model"})
        .to_string(),
    )
    .unwrap();
    d.display().to_string()
}

/// Builds and publishes a model bundle; returns its CID.
pub fn publish_model(env: &Env, src: &str, out: &str) -> String {
    let built = env.hub(&["model", "build", src, "--out", &env.s(out)]).ok();
    env.publish(&env.s(out), &[]);
    built["cid"].as_str().unwrap().to_string()
}

/// The example packs and the two tiny models, published and carried to a
/// spoke with the sample products and documents; returns (data dir, embedding
/// CID, generation CID).
pub fn ai_spoke(env: &Env) -> (String, String, String) {
    env.publish_examples();
    let e = model_src(env, "minilm-src", "tiny-minilm", "0.1.0", "embedding", 0);
    let g = model_src(env, "smol-src", "tiny-smol", "0.1.0", "generation", 7);
    let ecid = publish_model(env, &e, "minilm.bundle");
    let gcid = publish_model(env, &g, "smol.bundle");
    let d = env.stock_spoke("spoke");
    (d, ecid, gcid)
}

/// A spoke with work that a hold must stop (see [`busy_spoke`]).
#[allow(dead_code)]
pub struct Busy {
    /// Its data directory (a path).
    pub d: String,
    /// A pending pack change (the annexes 2026.2.0 upgrade).
    pub pending: String,
    /// An applied change (the first install).
    pub applied: String,
}

/// A spoke at `spoke` with the real example packs and a tiny embedding
/// model installed from a medium, administrators `admins` (signing in with
/// `password`), a later model version waiting for activation, a later
/// annexes release proposed as a pending change, a still later one exported
/// to `next_medium` but not installed, and a supplier `acme`.
#[allow(dead_code)]
pub fn busy_spoke(env: &Env, admins: &[&str], password: &str, next_medium: &str) -> Busy {
    env.publish_examples();
    let tiny = |v: &str| {
        model_src(
            env,
            &format!("minilm-{v}"),
            "tiny-minilm",
            v,
            "embedding",
            0,
        )
    };
    publish_model(env, &tiny("0.1.0"), "minilm-1.bundle");
    let d = env.stock_spoke("spoke");
    env.add_admins(&d, admins, password);
    publish_model(env, &tiny("0.2.0"), "minilm-2.bundle");
    env.export("models-usb", &["--only", "tiny-minilm"]);
    env.import("spoke", "models-usb").ok();
    let annexes = |version: &str, out: &str| {
        let src = annexes_upgrade(env, version, &[("Lilial", "80-54-6")]);
        env.build_publish(&src, &format!("annexes-{version}.bundle"), &[]);
        env.export(out, &["--only", "@data/eu-cosmetics-annexes"]);
    };
    annexes("2026.2.0", "upgrade-usb");
    let pending = env.import("spoke", "upgrade-usb").ok()["change"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    annexes("2026.3.0", next_medium);
    let applied = env
        .spoke(&["changes", "list", "--data", &d])
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "applied")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let supplier = env.path("supplier.json");
    std::fs::write(
        &supplier,
        r#"{"id": "acme", "kind": "supplier", "name": "Acme"}"#,
    )
    .unwrap();
    env.spoke(&[
        "entity",
        "add",
        "--data",
        &d,
        &supplier.display().to_string(),
    ])
    .ok();
    Busy {
        d,
        pending,
        applied,
    }
}

/// Asserts two snapshots are equal, naming (not dumping) what differs.
pub fn assert_same(before: &BTreeMap<PathBuf, Vec<u8>>, after: &BTreeMap<PathBuf, Vec<u8>>) {
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "the data directory changed: {changed:?}"
    );
}

/// Every file below `dir` with its content, for "nothing changed" assertions.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    b"<dir>".to_vec(),
                );
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Pseudo-random but compressible bytes.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"substance ",
        b"limit ",
        b"annex ",
        b"cosmetic ",
        b"0.1% ",
        b"CAS ",
        b"restricted ",
        b"\n",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize]);
        out.extend_from_slice(format!("{}", x % 100_000).as_bytes());
    }
    out.truncate(len);
    out
}

/// The chunk files on a medium.
pub fn chunk_files(medium: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(medium.join("chunks")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}
