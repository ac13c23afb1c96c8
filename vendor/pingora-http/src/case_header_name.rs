// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(Bytes);

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        CaseHeaderName(name.into())
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        CaseHeaderName(Bytes::copy_from_slice(buf))
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// The case-preserving name and the [HeaderName] it stands for.
    // edgeward patch: a name given as a `HeaderName` is not parsed again
    // from its bytes (about 230 instructions per field inserted); the
    // default parses the case-preserving name, as before.
    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)>
    where
        Self: Sized,
    {
        let case_header_name = self.into_case_header_name();
        let header_name: HeaderName = case_header_name
            .as_slice()
            .try_into()
            .or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok((case_header_name, header_name))
    }

    /// The [HeaderName] alone, for a header that keeps no case.
    // edgeward patch: a header without a case map had the case-preserving
    // name built for nothing (an allocation for a name that is not one of
    // the standard ones); the default is the same as before.
    fn into_header_name(self) -> Result<HeaderName>
    where
        Self: Sized,
    {
        self.into_case_and_header_name().map(|(_, name)| name)
    }
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self.into())
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(&self))
    }

    // edgeward patch: already parsed (see the trait).
    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)> {
        Ok((CaseHeaderName(titled_header_name(&self)), self))
    }

    // edgeward patch: see the trait.
    fn into_header_name(self) -> Result<HeaderName> {
        Ok(self)
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(titled_header_name(self))
    }

    // edgeward patch: already parsed (see the trait).
    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)> {
        Ok((CaseHeaderName(titled_header_name(self)), self.clone()))
    }

    // edgeward patch: see the trait.
    fn into_header_name(self) -> Result<HeaderName> {
        Ok(self.clone())
    }
}

/// A header name known when the program is built, with the case it is
/// written in on the wire: `TitledHeaderName::new("X-Request-Id",
/// "x-request-id")`, in a `static`.
// edgeward patch: inserting a name that is not one of the standard ones
// copied its bytes into a fresh allocation for the case map on every insert
// (about 250 instructions), and wrote it in lowercase; this one costs no
// allocation and no parse, and keeps the given case.
#[derive(Debug, Clone)]
pub struct TitledHeaderName {
    case: CaseHeaderName,
    name: HeaderName,
}

impl TitledHeaderName {
    /// `case` is the name as written on the wire, `lowercase` the same name
    /// in lowercase. Both are checked when it is built: a `const` or
    /// `static` that breaks this does not compile (`HeaderName::from_static`
    /// checks `lowercase`, this checks that `case` is the same name).
    pub const fn new(case: &'static str, lowercase: &'static str) -> Self {
        let (a, b) = (case.as_bytes(), lowercase.as_bytes());
        assert!(a.len() == b.len(), "TitledHeaderName: not the same name");
        let mut i = 0;
        while i < a.len() {
            assert!(
                a[i].to_ascii_lowercase() == b[i],
                "TitledHeaderName: not the same name"
            );
            i += 1;
        }
        TitledHeaderName {
            case: CaseHeaderName(Bytes::from_static(a)),
            name: HeaderName::from_static(lowercase),
        }
    }

    /// The name, for lookups.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl IntoCaseHeaderName for &TitledHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.case.clone()
    }

    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)> {
        Ok((self.case.clone(), self.name.clone()))
    }

    fn into_header_name(self) -> Result<HeaderName> {
        Ok(self.name.clone())
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        CaseHeaderName(self)
    }
}

fn titled_header_name(header_name: &HeaderName) -> Bytes {
    titled_header_name_str(header_name).map_or_else(
        || Bytes::copy_from_slice(header_name.as_str().as_bytes()),
        |s| Bytes::from_static(s.as_bytes()),
    )
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // edgeward patch: two names whose usual spelling is not the title
        // case `header_to_h1_wire` makes of the others (`Etag`).
        header::ETAG => "ETag",
        header::WWW_AUTHENTICATE => "WWW-Authenticate",
        // TODO: add more const header here to map to their titled case
        // TODO: automatically upper case the first letter?
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }
}
