//! Content-defined chunking and the content-addressed chunk store.
//!
//! Payload files are cut with FastCDC (16 KiB min, 64 KiB average, 1 MiB max),
//! each chunk is zstd-compressed at a fixed level and named by the SHA-256 of
//! the compressed bytes, so identical content is stored once across bundles
//! and versions, and a chunk is verified before it is decompressed.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::index::{sha256_hex, ChunkRef, MAX_CHUNK_SIZE};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Smallest chunk FastCDC cuts.
pub const CDC_MIN: u32 = 16 * 1024;
/// Average chunk size.
pub const CDC_AVG: u32 = 64 * 1024;
/// Largest chunk.
pub const CDC_MAX: u32 = MAX_CHUNK_SIZE as u32;
/// zstd level; part of the format because chunk ids depend on it.
pub const ZSTD_LEVEL: i32 = 3;

/// A compressed chunk ready to store.
pub struct SealedChunk {
    /// Its reference in the index.
    pub r#ref: ChunkRef,
    /// Compressed bytes.
    pub bytes: Vec<u8>,
}

/// Cuts `data` into content-defined pieces (offset, length).
pub fn cut(data: &[u8]) -> Vec<(usize, usize)> {
    fastcdc::v2020::FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX)
        .map(|c| (c.offset, c.length))
        .collect()
}

/// Cuts `data` and compresses every piece on the thread pool; the result is in data order.
pub fn seal_all(data: &[u8]) -> Result<Vec<SealedChunk>> {
    seal_pieces(data, &cut(data))
}

/// Chunks cut, compressed and handed on together by [`seal_stream`].
const STREAM_BATCH: usize = 64;

/// Cuts `data` (content-defined, as [`cut`]) and compresses the chunks on the
/// thread pool, handing them to `sink` in data order a batch at a time;
/// cutting and hashing the next batch and the sink's work on the previous one
/// run beside the compression of the current one. Returns the SHA-256 (hex)
/// of `data`.
pub fn seal_stream(
    data: &[u8],
    mut sink: impl FnMut(Vec<SealedChunk>) -> Result<()> + Send,
) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut cuts = fastcdc::v2020::FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX);
    let mut hasher = Sha256::new();
    let mut next_batch = || -> Vec<(usize, usize)> {
        let batch: Vec<(usize, usize)> = cuts
            .by_ref()
            .take(STREAM_BATCH)
            .map(|c| (c.offset, c.length))
            .collect();
        for &(o, l) in &batch {
            hasher.update(&data[o..o + l]);
        }
        batch
    };
    let mut batch = next_batch();
    let mut sealed: Option<Vec<SealedChunk>> = None;
    while !batch.is_empty() {
        let ready = sealed.take();
        let (now, next) = rayon::join(
            || seal_pieces(data, &batch),
            || -> Result<Vec<(usize, usize)>> {
                if let Some(r) = ready {
                    sink(r)?;
                }
                Ok(next_batch())
            },
        );
        sealed = Some(now?);
        batch = next?;
    }
    if let Some(r) = sealed {
        sink(r)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Cuts `data` into pieces of `size` bytes (the last may be shorter), for
/// files that change in place at fixed offsets, such as database pages.
pub fn cut_fixed(data: &[u8], size: usize) -> Vec<(usize, usize)> {
    let size = size.max(1);
    (0..data.len())
        .step_by(size)
        .map(|o| (o, size.min(data.len() - o)))
        .collect()
}

/// Compresses the pieces `cuts` of `data` on the thread pool; the result is in data order.
pub fn seal_pieces(data: &[u8], cuts: &[(usize, usize)]) -> Result<Vec<SealedChunk>> {
    use rayon::prelude::*;
    cuts.par_iter()
        .map(|&(o, l)| seal(&data[o..o + l]))
        .collect()
}

thread_local! {
    // One compression and one decompression context per thread: creating a zstd
    // context per 64 KiB chunk costs more than compressing it.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses one plain chunk.
pub fn seal(plain: &[u8]) -> Result<SealedChunk> {
    let bytes = COMPRESSOR
        .with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
            }
            match c.as_mut() {
                Some(c) => c.compress(plain),
                None => Err(std::io::Error::other("no zstd context")),
            }
        })
        .map_err(Error::io("compress chunk", "<memory>"))?;
    Ok(SealedChunk {
        r#ref: ChunkRef {
            id: sha256_hex(&bytes),
            size: plain.len() as u64,
            stored: bytes.len() as u64,
        },
        bytes,
    })
}

/// Verifies stored bytes against their reference, then decompresses them,
/// never producing more than the declared plain size.
pub fn open(r: &ChunkRef, stored: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if stored.len() as u64 != r.stored {
        return Err(if (stored.len() as u64) < r.stored {
            Error::Truncated {
                what: format!("chunk {}", r.id),
                detail: format!("{} of {} bytes", stored.len(), r.stored),
            }
        } else {
            Error::TooLarge {
                what: format!("chunk {}", r.id),
                size: stored.len() as u64,
                max: r.stored,
            }
        });
    }
    let found = sha256_hex(stored);
    if found != r.id {
        return Err(Error::DigestMismatch {
            what: format!("chunk {}", r.id),
            expected: r.id.clone(),
            found,
        });
    }
    out.clear();
    // Fast path: the frame header states its content size; refuse a mismatch before
    // decompressing, then decompress into a buffer that cannot grow past it.
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(stored) {
        if n > r.size {
            return Err(Error::DecompressionBomb {
                chunk: r.id.clone(),
                declared: r.size,
            });
        }
        out.reserve_exact(r.size as usize);
        let written = DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            match d.as_mut() {
                Some(d) => d.decompress_to_buffer(stored, out),
                None => Err(std::io::Error::other("no zstd context")),
            }
        });
        return match written {
            Ok(len) if len as u64 == r.size => Ok(()),
            Ok(len) => Err(Error::Truncated {
                what: format!("chunk {}", r.id),
                detail: format!("decompressed to {len} of {} bytes", r.size),
            }),
            Err(e) => Err(Error::invalid(
                format!("chunk {}", r.id),
                format!("corrupt zstd data: {e}"),
            )),
        };
    }
    // Frames without a content size: stream with a hard cap of declared size + 1.
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(stored).map_err(Error::io("open chunk", &r.id))?;
    let mut limited = (&mut dec).take(r.size + 1);
    limited.read_to_end(out).map_err(|e| {
        Error::invalid(format!("chunk {}", r.id), format!("corrupt zstd data: {e}"))
    })?;
    if out.len() as u64 > r.size {
        return Err(Error::DecompressionBomb {
            chunk: r.id.clone(),
            declared: r.size,
        });
    }
    if (out.len() as u64) < r.size {
        return Err(Error::Truncated {
            what: format!("chunk {}", r.id),
            detail: format!("decompressed to {} of {} bytes", out.len(), r.size),
        });
    }
    Ok(())
}

/// Relative location of a chunk inside a store: `ab/abcdef….zst`.
pub fn chunk_rel_path(id: &str) -> PathBuf {
    let prefix = id.get(..2).unwrap_or("00");
    PathBuf::from(prefix).join(format!("{id}.zst"))
}

/// A directory of chunks named by their id.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    root: PathBuf,
}

impl ChunkStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ChunkStore { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a chunk.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(chunk_rel_path(id))
    }

    /// Whether the chunk is present.
    pub fn contains(&self, id: &str) -> bool {
        self.path(id).is_file()
    }

    /// Stores compressed bytes unless already present. The write is atomic but
    /// not yet durable: callers batch many chunks and then call
    /// [`fsutil::sync_filesystem`] before their commit point.
    pub fn put(&self, id: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(id);
        if path.is_file() {
            return Ok(());
        }
        fsutil::write_unsynced(&path, bytes)
    }

    /// Reads a chunk's stored bytes, refusing more than `max` bytes.
    pub fn get(&self, id: &str, max: u64) -> Result<Vec<u8>> {
        let path = self.path(id);
        fsutil::read_regular(&path, max).map_err(|e| match e {
            Error::Truncated { .. } => Error::Truncated {
                what: format!("chunk {id}"),
                detail: format!("missing at {}", path.display()),
            },
            other => other,
        })
    }

    /// Every chunk id in the store, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return Ok(ids);
        };
        for d in dirs {
            let d = d.map_err(Error::io("list", &self.root))?;
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files {
                let f = f.map_err(Error::io("list", d.path()))?;
                if let Some(id) = f.file_name().to_str().and_then(|n| n.strip_suffix(".zst")) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal(&plain).unwrap();
        let mut out = Vec::new();
        open(&sealed.r#ref, &sealed.bytes, &mut out).unwrap();
        assert_eq!(out, plain);

        let mut bad = sealed.bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open(&sealed.r#ref, &bad, &mut out).unwrap_err().kind(),
            "digest_mismatch"
        );
        assert_eq!(
            open(&sealed.r#ref, &sealed.bytes[..10], &mut out)
                .unwrap_err()
                .kind(),
            "truncated"
        );
    }

    #[test]
    fn streaming_cuts_and_seals_exactly_like_the_whole_file_at_once() {
        // Pseudo-random bytes (xorshift), enough for many batches of chunks.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..(STREAM_BATCH * 3 + 7) * CDC_AVG as usize)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 7) as u8
            })
            .collect();
        let whole: Vec<ChunkRef> = seal_all(&data)
            .unwrap()
            .into_iter()
            .map(|c| c.r#ref)
            .collect();
        let mut streamed = Vec::new();
        let mut batches = 0;
        let sha = seal_stream(&data, |b| {
            batches += 1;
            streamed.extend(b.into_iter().map(|c| c.r#ref));
            Ok(())
        })
        .unwrap();
        assert!(batches > 2, "{batches} batches");
        assert_eq!(streamed, whole);
        assert_eq!(sha, sha256_hex(&data));
        assert_eq!(seal_stream(&[], |_| Ok(())).unwrap(), sha256_hex(&[]));
    }

    #[test]
    fn declared_size_caps_decompression() {
        let plain = vec![0u8; 500_000];
        let sealed = seal(&plain).unwrap();
        let mut lying = sealed.r#ref.clone();
        lying.size = 1000;
        let mut out = Vec::new();
        assert_eq!(
            open(&lying, &sealed.bytes, &mut out).unwrap_err().kind(),
            "decompression_bomb"
        );
        assert!(out.len() <= 1001);
    }

    #[test]
    fn cdc_boundaries_survive_an_insert() {
        let mut data: Vec<u8> = (0..3_000_000u64)
            .map(|i| ((i * 2654435761) >> 13) as u8)
            .collect();
        let before: std::collections::HashSet<_> = cut(&data)
            .into_iter()
            .map(|(o, l)| sha256_hex(&data[o..o + l]))
            .collect();
        data.splice(1_000_000..1_000_000, [7u8; 100]);
        let after: Vec<_> = cut(&data)
            .into_iter()
            .map(|(o, l)| sha256_hex(&data[o..o + l]))
            .collect();
        let shared = after.iter().filter(|h| before.contains(*h)).count();
        assert!(
            shared + 3 >= after.len(),
            "only {shared} of {} chunks shared",
            after.len()
        );
    }
}
