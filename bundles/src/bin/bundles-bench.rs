//! Benchmarks for bundles (issue 2), as ratios against a baseline measured on
//! the same data in the same run:
//!
//! - import (verify + decompress + assemble) vs `zstd -d -c | sha256sum`;
//! - build vs `tar -cf - | zstd -3 -T0`;
//! - bytes exported for a 5% change with `--have` vs a full export.
//!
//! `cargo run --release -p bundles --bin bundles-bench -- --out docs/benchmarks.md [--size-mib N]`
//! replaces the "Bundles" section of the output file.

use bundles::build::{build_pack, BuildOptions};
use bundles::chunks::ChunkStore;
use bundles::keys::KeyDir;
use bundles::medium::{dir_size, export, ExportOptions, Inventory, INVENTORY_FORMAT};
use bundles::repo::{self, Expiries, InitOptions};
use bundles::verify::{assemble, verify_repository, ChunkSources, Policy, TrustState};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type R<T> = Result<T, Box<dyn Error>>;

struct Args {
    out: PathBuf,
    size_mib: usize,
}

fn args() -> R<Args> {
    let mut out = PathBuf::from("docs/benchmarks.md");
    let mut size_mib = 1024;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next().ok_or("--out needs a file")?.into(),
            "--size-mib" => size_mib = it.next().ok_or("--size-mib needs a number")?.parse()?,
            other => {
                return Err(format!("unknown argument {other}; use --out FILE --size-mib N").into())
            }
        }
    }
    Ok(Args { out, size_mib })
}

/// Log-like text, about 3x compressible by zstd, from an xorshift generator.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 16] = [
        b"substance ",
        b"limit ",
        b"annex ",
        b"cosmetic ",
        b"0.1% ",
        b"CAS ",
        b"restricted ",
        b"\n",
        b"ethanol ",
        b"glycerin ",
        b"leave-on ",
        b"rinse-off ",
        b"label ",
        b"product ",
        b"formulation ",
        b"ppm ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x & 15) as usize]);
        if x & 0x30 == 0 {
            out.extend_from_slice(format!("{} ", (x >> 8) % 1_000_000_007).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Best wall-clock seconds of `runs` runs (after one warm-up).
fn best(runs: usize, mut f: impl FnMut() -> R<()>) -> R<f64> {
    f()?;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn sh(script: &str) -> R<()> {
    let st = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .status()?;
    if !st.success() {
        return Err(format!("baseline command failed: {script}").into());
    }
    Ok(())
}

fn write_pack(dir: &Path, version: &str, data: &[u8]) -> R<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("pack.json"),
        format!(
            r#"{{"name":"@bench/payload","version":"{version}","type":"intelligence","handler_vm_version":"^1.0.0","trust_tier":"verified"}}"#
        ),
    )?;
    std::fs::write(dir.join("payload.bin"), data)?;
    Ok(())
}

fn main() -> R<()> {
    let a = args()?;
    if Command::new("zstd").arg("--version").output().is_err() {
        return Err("the baselines need the zstd CLI: install zstd (apt-get install zstd)".into());
    }
    let size = a.size_mib * 1024 * 1024;
    let tmp = tempfile::tempdir_in(std::env::current_dir()?)?;
    let t = |p: &str| tmp.path().join(p);
    let q = |p: &Path| p.display().to_string();
    eprintln!("generating {} MiB", a.size_mib);
    let data = payload(size, 42);
    write_pack(&t("src1"), "1.0.0", &data)?;
    let opts = BuildOptions::from_env("bundles-bench")?;

    eprintln!("build");
    let ours_build = best(2, || {
        build_pack(&t("src1"), &t("v1.bundle"), &opts, &())?;
        Ok(())
    })?;
    let base_build = best(2, || {
        sh(&format!(
            "tar -cf - -C {} . | zstd -3 -T0 -q -f -o {}",
            q(&t("src1")),
            q(&t("base.tar.zst"))
        ))
    })?;

    let keys = KeyDir::new(t("keys"));
    let init = InitOptions {
        root_keys: 1,
        root_threshold: 1,
        expiries: Expiries::default(),
    };
    repo::init(&t("repo"), &keys, &init)?;
    repo::publish(
        &t("repo"),
        &keys,
        &[t("v1.bundle")],
        &Expiries::default(),
        &(),
    )?;
    export(&t("repo"), &t("m1"), &ExportOptions::default(), &())?;

    eprintln!("import");
    let root = std::fs::read(t("m1/metadata/1.root.json"))?;
    let trust = TrustState::from_root(&root, "1.root.json")?;
    let mut round = 0;
    let ours_import = best(2, || {
        round += 1;
        let stage = t(&format!("stage{round}"));
        let verified = verify_repository(&t("m1"), &trust, &Policy::sneakernet())?;
        let (installed, staged, medium) = (
            ChunkStore::new(t("none")),
            ChunkStore::new(stage.join("chunks")),
            verified.layout().chunks(),
        );
        let sources = ChunkSources {
            installed: &installed,
            staged: &staged,
            medium: &medium,
        };
        for p in &verified.bundles {
            let (index, _) = verified.read_index(p)?;
            assemble(
                &index,
                &sources,
                &stage.join("payload"),
                &Policy::sneakernet(),
                &(),
            )?;
        }
        bundles::fsutil::sync_filesystem(&stage)?;
        std::fs::remove_dir_all(&stage)?;
        Ok(())
    })?;
    sh(&format!(
        "zstd -3 -T0 -q -f {} -o {}",
        q(&t("src1/payload.bin")),
        q(&t("payload.zst"))
    ))?;
    let base_import = best(2, || {
        sh(&format!(
            "zstd -d -c {} | sha256sum > /dev/null",
            q(&t("payload.zst"))
        ))
    })?;

    eprintln!("delta");
    let mut changed = data.clone();
    let regions = 50;
    let region = size / 20 / regions;
    let noise = payload(region * regions, 7);
    for i in 0..regions {
        let at = i * (size / regions);
        changed[at..at + region].copy_from_slice(&noise[i * region..(i + 1) * region]);
    }
    write_pack(&t("src2"), "1.0.1", &changed)?;
    build_pack(&t("src2"), &t("v2.bundle"), &opts, &())?;
    repo::publish(
        &t("repo"),
        &keys,
        &[t("v2.bundle")],
        &Expiries::default(),
        &(),
    )?;
    let have = Inventory {
        format: INVENTORY_FORMAT.into(),
        chunks: ChunkStore::new(t("m1/chunks"))
            .list()?
            .into_iter()
            .collect(),
    };
    let only = vec![bundles::index::target_name(
        bundles::index::BundleKind::Pack,
        "@bench/payload",
        &semver::Version::new(1, 0, 1),
    )];
    export(
        &t("repo"),
        &t("full"),
        &ExportOptions {
            only: only.clone(),
            ..Default::default()
        },
        &(),
    )?;
    export(
        &t("repo"),
        &t("delta"),
        &ExportOptions {
            only,
            have: Some(have),
            recipients: Vec::new(),
        },
        &(),
    )?;
    let (full, delta) = (dir_size(&t("full"))?, dir_size(&t("delta"))?);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let zstd_version = String::from_utf8(Command::new("zstd").arg("--version").output()?.stdout)?
        .trim()
        .to_string();
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let (ri, rb, rd) = (
        base_import / ours_import,
        base_build / ours_build,
        delta as f64 / full as f64,
    );
    let section = format!(
        "## Bundles (issue 2)\n\n\
         Payload: {mib} MiB of generated log-like text (zstd -3 ratio about {ratio:.1}x), one file. \
         Machine: {cores} cores, {cpu}; {zstd_version}. Wall-clock seconds, best of 2 after a warm-up, \
         ours and the baseline on the same data in the same run (`cargo run --release -p bundles --bin bundles-bench -- --size-mib {mib}`).\n\n\
         | metric | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n\
         | import: verify + decompress + assemble (+ one syncfs) vs `zstd -d -c \\| sha256sum` | {oi:.3} s | {bi:.3} s | {ri:.2}x | >= 0.9x | {mi} |\n\
         | build: chunk + compress + digests + bundle file vs `tar -cf - \\| zstd -3 -T0` | {ob:.3} s | {bb:.3} s | {rb:.2}x | >= 0.8x | {mb} |\n\
         | offline delta (`--have`) for a 5% change vs full export | {delta} B | {full} B | {pct:.1}% | <= 8% | {md} |\n",
        mib = a.size_mib,
        ratio = size as f64 / std::fs::metadata(t("payload.zst"))?.len() as f64,
        cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        oi = ours_import,
        bi = base_import,
        mi = met(ri >= 0.9),
        ob = ours_build,
        bb = base_build,
        mb = met(rb >= 0.8),
        pct = rd * 100.0,
        md = met(rd <= 0.08),
    );
    print!("{section}");
    let existing = std::fs::read_to_string(&a.out).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let updated = match existing.find("## Bundles (issue 2)") {
        Some(start) => {
            let end = existing[start + 3..]
                .find("\n## ")
                .map(|e| start + 3 + e + 1)
                .unwrap_or(existing.len());
            format!("{}{}{}", &existing[..start], section, &existing[end..])
        }
        None => format!("{}\n{}", existing.trim_end(), "\n") + &section,
    };
    bundles::fsutil::atomic_write(&a.out, updated.as_bytes())?;
    Ok(())
}
