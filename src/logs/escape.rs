//! Escaping of values in log lines, so that a client can never forge or
//! break a line or a field.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

/// Text formats: `"`, `\`, control characters and bytes >= 0x7F become
/// `\xHH`, as nginx does.
pub(crate) fn text(out: &mut Vec<u8>, value: &[u8]) {
    let safe = |b: u8| b != b'"' && b != b'\\' && (0x20..0x7f).contains(&b);
    let mut rest = value;
    while !rest.is_empty() {
        // Copy the run of safe bytes at once, then escape one byte.
        let run = rest.iter().position(|&b| !safe(b)).unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        if let Some(&b) = rest.get(run) {
            push_hex(out, b);
            rest = &rest[run + 1..];
        } else {
            break;
        }
    }
}

/// Inside a JSON string: JSON escapes for `"`, `\` and control characters;
/// valid UTF-8 kept; each byte of invalid UTF-8 written as the text `\xHH`
/// (its backslash escaped), so the line is always valid JSON.
pub(crate) fn json(out: &mut Vec<u8>, value: &[u8]) {
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            out.push(b'\\');
            push_hex(out, b);
        }
    }
}

/// A message for the sites log: control characters (but tab) as `\xHH`.
pub(crate) fn message(out: &mut Vec<u8>, msg: &str) {
    for &b in msg.as_bytes() {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            push_hex(out, b);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[u8]) -> String {
        let mut o = Vec::new();
        text(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    fn j(v: &[u8]) -> String {
        let mut o = Vec::new();
        json(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn text_escaping() {
        assert_eq!(t(b"Mozilla/5.0 (X11)"), "Mozilla/5.0 (X11)");
        assert_eq!(t(b"a\"b\\c\r\nd"), "a\\x22b\\x5Cc\\x0D\\x0Ad");
        assert_eq!(t("é".as_bytes()), "\\xC3\\xA9");
        assert_eq!(t(&[0xff, 0x00, 0x7f]), "\\xFF\\x00\\x7F");
    }

    #[test]
    fn json_escaping() {
        assert_eq!(j(b"a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
        assert_eq!(j("é".as_bytes()), "é");
        assert_eq!(j(&[b'a', 0xff, b'b']), "a\\\\xFFb");
    }

    #[test]
    fn message_escaping() {
        let mut o = Vec::new();
        message(&mut o, "line\r\nforged\tok é");
        assert_eq!(String::from_utf8(o).unwrap(), "line\\x0D\\x0Aforged\tok é");
    }
}
