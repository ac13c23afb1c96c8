//! Path globs for `exclude_paths` (and profile rule-file lists), and the
//! path normalization they are matched against.

/// `*` matches any run of characters (`/` included), `?` exactly one; every
/// other character matches itself. The whole text must match.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where the last `*` was, and the text position it currently covers to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more character.
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The path part of a request target as the upstream will understand it:
/// query string cut off, percent-escapes decoded, `//` collapsed, `.` and
/// `..` segments resolved (never above the root); `%25`, `%3F` and `%23`
/// stay escaped and a `%` that starts no escape becomes `%25` (so
/// normalizing is idempotent). Exclusions are matched on
/// this, so `/wp-admin/../index.php` or `/%77p-admin/x` cannot pick an
/// excluded path to slip past the WAF, or dodge an exclusion.
pub(crate) fn normalize(target: &[u8]) -> Vec<u8> {
    // Absolute-form targets (http://host/path): keep the path.
    let mut raw = target;
    if let Some(i) = raw.windows(3).position(|w| w == b"://") {
        let after = &raw[i + 3..];
        raw = after
            .iter()
            .position(|&b| b == b'/')
            .map_or(&b"/"[..], |j| &after[j..]);
    }
    let path = raw.split(|&b| b == b'?' || b == b'#').next().unwrap_or(b"");
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%'
            && i + 2 < path.len()
            && let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2]))
        {
            match h << 4 | l {
                // Kept escaped (upper case), so that normalizing twice
                // changes nothing: decoded, `%` would start another escape
                // and `?`/`#` would end the path.
                b @ (b'%' | b'?' | b'#') => {
                    decoded.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 15)],
                    ]);
                }
                b => decoded.push(b),
            }
            i += 3;
            continue;
        }
        if path[i] == b'%' {
            // A `%` that starts no escape is a literal one: written `%25`,
            // as a decoded one is, else a byte decoded after it could
            // complete an escape the next time (`%%41` -> `%A41` -> `%A4`+`1`).
            decoded.extend_from_slice(b"%25");
        } else {
            decoded.push(path[i]);
        }
        i += 1;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in decoded.split(|&b| b == b'/' || b == b'\\') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    // Keep a trailing slash: `/foo/` and `/foo` are different patterns.
    let trailing = decoded.last().is_some_and(|&b| b == b'/' || b == b'\\')
        || decoded.ends_with(b"/.")
        || decoded.ends_with(b"/..");
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"/wp-admin/*", b"/wp-admin/post.php"));
        assert!(glob_match(b"/wp-admin/*", b"/wp-admin/a/b/c"));
        assert!(glob_match(b"/wp-admin/*", b"/wp-admin/"));
        assert!(!glob_match(b"/wp-admin/*", b"/wp-admin"));
        assert!(glob_match(b"/img?.png", b"/img1.png"));
        assert!(!glob_match(b"/img?.png", b"/img12.png"));
        assert!(glob_match(b"*.php", b"/a/b.php"));
        assert!(glob_match(b"/a*b*c", b"/aXXbYYbZc"));
        assert!(!glob_match(b"/a*b*c", b"/aXXbYYd"));
        assert!(glob_match(b"/foo/", b"/foo/"));
        assert!(!glob_match(b"/foo/", b"/foo/bar"));
        assert!(glob_match(b"", b""));
        assert!(glob_match(b"**", b""));
        assert!(glob_match(
            b"REQUEST-922-*.conf",
            b"REQUEST-922-MULTIPART-ATTACK.conf"
        ));
    }

    #[test]
    fn normalizes_like_an_upstream_would() {
        let n = |s: &str| String::from_utf8(normalize(s.as_bytes())).unwrap();
        assert_eq!(n("/foo/?a=1"), "/foo/");
        assert_eq!(n("/wp-admin/../index.php"), "/index.php");
        assert_eq!(n("/%77p-admin/x?y"), "/wp-admin/x");
        assert_eq!(n("//a///b"), "/a/b");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/%2e%2e/b"), "/b");
        assert_eq!(n("http://h/x/y?z"), "/x/y");
        assert_eq!(n(""), "/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/bad%zz%4"), "/bad%25zz%254");
        // a literal `%` cannot start an escape with what follows it decoded
        assert_eq!(n("/%%4141"), "/%25A41");
        assert_eq!(n("/%25A41"), "/%25A41");
        assert_eq!(n("/100%"), n("/100%25"));
    }
}
