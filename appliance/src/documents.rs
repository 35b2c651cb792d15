//! Documents: uploads sniffed by their magic bytes (never trusted by name or
//! declared type), capped in size, stored under generated content-addressed
//! names, with their text extracted for search (PDF and plain text).

use crate::auth::{new_id, Actor, Permission};
use crate::entities::valid_id;
use crate::service::Appliance;
use crate::store::{now, tx_db, Audit, Class, Store};
use crate::Error;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Default upload cap: 25 MiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 25 * 1024 * 1024;
/// Extracted text kept per document (for search); the file itself is kept whole.
const MAX_TEXT: usize = 4 * 1024 * 1024;

/// What an uploaded file is, from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `%PDF-` header.
    Pdf,
    /// UTF-8 text without NUL bytes.
    Text,
}

impl MediaType {
    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            MediaType::Pdf => "application/pdf",
            MediaType::Text => "text/plain; charset=utf-8",
        }
    }
}

/// Known binary formats, named in the refusal so the user knows what they sent.
const MAGIC: [(&[u8], &str); 7] = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"GIF8", "a GIF image"),
];

/// Decides what `bytes` are; refuses anything but PDF and plain text, and a
/// file named `.pdf` that is not one.
pub fn sniff(filename: &str, bytes: &[u8]) -> Result<MediaType, Error> {
    let named_pdf = filename.to_ascii_lowercase().ends_with(".pdf");
    if bytes.starts_with(b"%PDF-") {
        return Ok(MediaType::Pdf);
    }
    let what = MAGIC
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, what)| *what);
    if named_pdf {
        return Err(Error::UnsupportedMedia(format!(
            "{filename:?} is named like a PDF but its content is {} (no %PDF- header); upload the real PDF",
            what.unwrap_or("not a PDF")
        )));
    }
    if let Some(what) = what {
        return Err(Error::UnsupportedMedia(format!(
            "{filename:?} is {what}; the spoke accepts PDF and plain-text documents"
        )));
    }
    if !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok() {
        return Ok(MediaType::Text);
    }
    Err(Error::UnsupportedMedia(format!(
        "{filename:?} is neither a PDF nor UTF-8 text; convert it to PDF and upload again"
    )))
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The display name of an upload: its last path component, without control characters.
fn display_name(filename: &str) -> Result<String, Error> {
    let base = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim();
    if base.is_empty()
        || base.len() > 255
        || base.chars().any(char::is_control)
        || base == "."
        || base == ".."
    {
        return Err(Error::Invalid(format!(
            "filename {filename:?}: give the file's name (1-255 characters, no control characters)"
        )));
    }
    Ok(base.to_string())
}

fn valid_date(field: &str, d: &str) -> Result<(), Error> {
    d.parse::<jiff::civil::Date>()
        .map(|_| ())
        .map_err(|_| Error::Invalid(format!("{field} {d:?}: use a date as YYYY-MM-DD")))
}

/// What the uploader says about a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    /// Document kind, e.g. `cpsr`, `sds`, `coa`.
    pub kind: String,
    /// The file's original name (for display only; never used as a path).
    pub filename: String,
    /// The entity it belongs to.
    #[serde(default)]
    pub entity: Option<String>,
    /// Expiry date (YYYY-MM-DD).
    #[serde(default)]
    pub expires: Option<String>,
}

/// A stored document's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Id.
    pub id: String,
    /// Entity it belongs to.
    pub entity: Option<String>,
    /// Kind.
    pub kind: String,
    /// Original file name.
    pub filename: String,
    /// Sniffed MIME type.
    pub media_type: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the content (its storage name).
    pub sha256: String,
    /// Expiry date.
    pub expires: Option<String>,
    /// Uploaded.
    pub created_at: String,
    /// Uploaded by.
    pub created_by: String,
    /// Characters of extracted text.
    pub text_chars: u64,
}

const COLUMNS: &str =
    "id, entity_id, kind, filename, media_type, size, object, expires, created_at, created_by, length(text)";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    Ok(Document {
        id: r.get(0)?,
        entity: r.get(1)?,
        kind: r.get(2)?,
        filename: r.get(3)?,
        media_type: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        sha256: r.get(6)?,
        expires: r.get(7)?,
        created_at: r.get(8)?,
        created_by: r.get(9)?,
        text_chars: r.get::<_, i64>(10)? as u64,
    })
}

impl Store {
    /// One document's metadata.
    pub fn document(&self, id: &str) -> Result<Document, Error> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM documents WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| Error::NotFound(format!("no document {id:?}")))
    }

    /// Documents, all or those of one entity, newest first.
    pub fn documents(&self, entity: Option<&str>) -> Result<Vec<Document>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM documents WHERE ?1 IS NULL OR entity_id = ?1 ORDER BY created_at DESC, id"
            ))
            .map_err(self.db())?;
        let rows = stmt.query_map([entity], row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// The extracted text of a document.
    pub(crate) fn document_text(&self, id: &str) -> Result<String, Error> {
        self.conn()
            .query_row("SELECT text FROM documents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| Error::NotFound(format!("no document {id:?}")))
    }
}

/// An upload that passed every check that needs the store, with the
/// extractor to read its text; [`Prepared::extract`] needs nothing else, so
/// the API runs it without holding the store.
#[derive(Debug, Clone)]
pub struct Prepared {
    input: DocumentInput,
    filename: String,
    media: MediaType,
    extractor: crate::pdftext::Extractor,
}

/// An upload with its text, ready to be stored.
#[derive(Debug, Clone)]
pub struct Extracted {
    prepared: Prepared,
    text: String,
}

impl Prepared {
    /// Reads the text of `bytes` (the same bytes that were prepared): a PDF
    /// through the extractor (in the spoke, a limited child process), text
    /// as is; cut to the stored maximum.
    pub fn extract(self, bytes: &[u8]) -> Result<Extracted, Error> {
        let text = truncate(match self.media {
            MediaType::Pdf => self.extractor.text(&self.filename, bytes)?,
            MediaType::Text => String::from_utf8_lossy(bytes).into_owned(),
        });
        Ok(Extracted {
            prepared: self,
            text,
        })
    }
}

impl Appliance {
    /// Stores an uploaded document: checks size, sniffs the content, extracts
    /// its text, writes the object atomically, then records it in one
    /// transaction. A refused upload stores nothing.
    pub fn add_document(
        &mut self,
        actor: &Actor,
        input: DocumentInput,
        bytes: &[u8],
    ) -> Result<Document, Error> {
        let extracted = self.prepare_document(actor, input, bytes)?.extract(bytes)?;
        self.store_document(actor, extracted, bytes)
    }

    /// Sets where PDF text is read ([`crate::pdftext`]).
    pub fn set_extractor(&mut self, extractor: crate::pdftext::Extractor) {
        self.extractor = extractor;
    }

    /// The checks of an upload that need the store (permission, lifecycle,
    /// size, name, kind, entity, expiry, content type); nothing is written.
    pub fn prepare_document(
        &self,
        actor: &Actor,
        input: DocumentInput,
        bytes: &[u8],
    ) -> Result<Prepared, Error> {
        actor.require(Permission::Write)?;
        self.store.check_writable()?;
        if bytes.len() as u64 > self.max_upload {
            return Err(Error::TooLarge {
                size: bytes.len() as u64,
                limit: self.max_upload,
            });
        }
        if bytes.is_empty() {
            return Err(Error::Invalid("the upload is empty".into()));
        }
        let filename = display_name(&input.filename)?;
        if input.kind.is_empty()
            || input.kind.len() > 40
            || !input
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Err(Error::Invalid(format!(
                "kind {:?}: use a lower-case document kind such as cpsr, sds or coa",
                input.kind
            )));
        }
        if let Some(e) = &input.entity {
            valid_id(e)?;
            self.store.entity(e)?;
        }
        if let Some(d) = &input.expires {
            valid_date("expires", d)?;
        }
        let media = sniff(&filename, bytes)?;
        Ok(Prepared {
            input,
            filename,
            media,
            extractor: self.extractor.clone(),
        })
    }

    /// Writes an extracted upload's object and records it in one
    /// transaction (the lifecycle is checked again there).
    pub fn store_document(
        &mut self,
        actor: &Actor,
        extracted: Extracted,
        bytes: &[u8],
    ) -> Result<Document, Error> {
        actor.require(Permission::Write)?;
        let Extracted {
            prepared:
                Prepared {
                    input,
                    filename,
                    media,
                    ..
                },
            text,
        } = extracted;
        let sha256 = self.objects.put(bytes)?;
        let id = new_id("doc")?;
        let w = self.store.write(actor, Class::Data, |tx| {
            tx.execute(
                "INSERT INTO documents (id, entity_id, kind, filename, media_type, size, object, text, expires, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id,
                    input.entity,
                    input.kind,
                    filename,
                    media.mime(),
                    bytes.len() as i64,
                    sha256,
                    text,
                    input.expires,
                    now(),
                    actor.name
                ],
            )
            .map_err(tx_db)?;
            Ok((
                (),
                vec![Audit {
                    action: "document.create",
                    target: id.clone(),
                    detail: serde_json::json!({ "kind": input.kind, "filename": filename, "sha256": sha256, "entity": input.entity }),
                }],
                vec![("document".to_string(), id.clone())],
            ))
        })?;
        self.after_write(&w.touched, w.generation);
        self.store.document(&id)
    }

    /// A document's bytes, checked against their digest.
    pub fn document_content(&self, id: &str) -> Result<(Document, Vec<u8>), Error> {
        let d = self.store.document(id)?;
        let bytes = self.objects.get(&d.sha256)?;
        Ok((d, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_trusts_content_not_names() {
        assert_eq!(sniff("a.pdf", b"%PDF-1.4\n...").unwrap(), MediaType::Pdf);
        assert_eq!(
            sniff("notes.txt", "Ünïcode text".as_bytes()).unwrap(),
            MediaType::Text
        );
        let e = sniff("report.pdf", b"hello, not a pdf").unwrap_err();
        assert!(e.to_string().contains("no %PDF- header"), "{e}");
        let e = sniff("photo.txt", b"\x89PNG\r\n\x1a\n....").unwrap_err();
        assert!(e.to_string().contains("PNG"), "{e}");
        assert!(sniff("bin.dat", b"a\0b").is_err());
    }

    #[test]
    fn names_are_for_display_only() {
        assert_eq!(display_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(display_name("C:\\Users\\x\\cpsr.pdf").unwrap(), "cpsr.pdf");
        assert!(display_name("..").is_err());
        assert!(display_name("a\nb").is_err());
    }
}
