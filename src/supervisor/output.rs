//! A program's stdout/stderr, always drained, split into lines (at most
//! 16 KiB: longer lines are cut and marked, the rest follows as the next
//! line), decoded lossily, `\r` stripped, the partial last line flushed at
//! the end of the stream.

use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) const MAX_LINE: usize = 16 * 1024;
pub(crate) const CUT_MARK: &str = " [line cut at 16 KiB]";

/// Read `stream` to its end, calling `emit` with each line.
pub(crate) async fn lines<R: AsyncRead + Unpin>(mut stream: R, mut emit: impl FnMut(String)) {
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 8192];
    let finish = |line: &mut Vec<u8>, emit: &mut dyn FnMut(String), cut: bool| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut s = String::from_utf8_lossy(line).into_owned();
        if cut {
            s.push_str(CUT_MARK);
        }
        line.clear();
        emit(s);
    };
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                finish(&mut line, &mut emit, false);
            } else {
                line.push(b);
                if line.len() >= MAX_LINE {
                    finish(&mut line, &mut emit, true);
                }
            }
        }
    }
    if !line.is_empty() {
        finish(&mut line, &mut emit, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        lines(input, |l| out.push(l)).await;
        out
    }

    #[tokio::test]
    async fn splits_strips_and_flushes() {
        assert_eq!(split(b"a\r\nb\n\nc").await, vec!["a", "b", "", "c"]);
        assert_eq!(split(b"\xff ok\n").await, vec!["\u{fffd} ok"]);
        let big = vec![b'x'; MAX_LINE + 10];
        let got = split(&[&big[..], b"\nnext\n"].concat()).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], format!("{}{CUT_MARK}", "x".repeat(MAX_LINE)));
        assert_eq!(got[1], "x".repeat(10));
        assert_eq!(got[2], "next");
    }
}
