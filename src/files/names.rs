//! Display names: the client's filename cleaned for showing and for Content-Disposition.
//! It is never part of a storage path, so this is about presentation, not safety.

use super::sniff::Kind;

pub const MAX_NAME_CHARS: usize = 200;

/// The last path component, without control characters, leading dots or excess length;
/// `file.<ext>` when nothing is left.
pub fn clean(raw: Option<&str>, kind: Kind) -> String {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_control() || is_invisible(c) {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    name = name.trim_start_matches(['.', ' ']).to_owned();
    if name.chars().count() > MAX_NAME_CHARS {
        // Keep the extension: `very-long….pdf`.
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| e.len() <= 10)
            .unwrap_or("");
        let keep = MAX_NAME_CHARS - ext.len() - 2;
        let stem: String = name.chars().take(keep).collect();
        name = if ext.is_empty() {
            stem
        } else {
            format!("{stem}….{ext}")
        };
    }
    if name.is_empty() {
        name = format!("file.{}", kind.extension());
    }
    name
}

/// Format characters that reorder or hide text (`invoice\u{202E}fdp.exe` shows as
/// `invoiceexe.pdf`): bidi controls, zero-width characters, line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266 / 8187).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_cleaned() {
        let cases = [
            (Some("../../etc/passwd"), "passwd"),
            (Some("..\\..\\windows\\system32\\cmd.exe"), "cmd.exe"),
            (Some("report\u{0}.pdf"), "report .pdf"),
            (Some("line\r\nbreak.txt"), "line break.txt"),
            (Some("...hidden"), "hidden"),
            (Some("   "), "file.pdf"),
            (None, "file.pdf"),
            (Some("Ünïcödé résumé.pdf"), "Ünïcödé résumé.pdf"),
            (Some("invoice\u{202E}fdp.exe"), "invoice fdp.exe"),
            (Some("zero\u{200B}width.txt"), "zero width.txt"),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw, Kind::Pdf), want, "{raw:?}");
        }
        let long = format!("{}.pdf", "a".repeat(500));
        let cleaned = clean(Some(&long), Kind::Pdf);
        assert!(
            cleaned.chars().count() <= MAX_NAME_CHARS && cleaned.ends_with(".pdf"),
            "{cleaned}"
        );
    }

    #[test]
    fn disposition_is_header_safe() {
        let value = content_disposition("naïve \"quote\".pdf");
        assert_eq!(
            value,
            "attachment; filename=\"na_ve _quote_.pdf\"; filename*=UTF-8''na%C3%AFve%20%22quote%22.pdf"
        );
        assert!(axum::http::HeaderValue::from_str(&value).is_ok());
    }
}
