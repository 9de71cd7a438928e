//! Text for the chat: txt, md, csv and json as they are; pdf through pdf-extract; docx by
//! reading its document XML; within a character budget.

use std::io::Read;

use super::sniff::Kind;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("this kind of file has no text to extract")]
    NotText,
    #[error("the file's text could not be read: {0}")]
    Unreadable(String),
}

/// Extracted text, cut at `budget` characters. Returns the text and whether it was cut.
pub fn extract(kind: Kind, bytes: &[u8], budget: usize) -> Result<(String, bool), ExtractError> {
    let text = match kind {
        Kind::Text | Kind::Markdown | Kind::Csv | Kind::Json => {
            String::from_utf8(bytes.to_vec())
                .map_err(|e| ExtractError::Unreadable(e.to_string()))?
        }
        Kind::Pdf => pdf_extract::extract_text_from_mem(bytes)
            .map_err(|e| ExtractError::Unreadable(e.to_string()))?,
        Kind::Docx => docx_text(bytes)?,
        _ => return Err(ExtractError::NotText),
    };
    Ok(cut(text, budget))
}

fn cut(text: String, budget: usize) -> (String, bool) {
    match text.char_indices().nth(budget) {
        Some((at, _)) => (text[..at].to_owned(), true),
        None => (text, false),
    }
}

/// The text runs of `word/document.xml`, a line per paragraph.
fn docx_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let bad = |e: &dyn std::fmt::Display| ExtractError::Unreadable(e.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|e| bad(&e))?
        // A bounded read: a zip bomb stops at 64 MiB of XML.
        .take(64 << 20)
        .read_to_string(&mut xml)
        .map_err(|e| bad(&e))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"w:t" => in_text = true,
            quick_xml::events::Event::End(e) if e.name().as_ref() == b"w:t" => in_text = false,
            quick_xml::events::Event::End(e) if e.name().as_ref() == b"w:p" => out.push('\n'),
            quick_xml::events::Event::Text(t) if in_text => {
                out.push_str(&t.unescape().map_err(|e| bad(&e))?);
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}
