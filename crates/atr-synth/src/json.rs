//! A minimal streaming JSON text writer for the per-member resources.
//!
//! Building a `serde_json::Value` for each of millions of Patients and Coverages costs an
//! allocation and a hash per key; writing the text straight into a reused buffer is an order of
//! magnitude faster. The output is exactly what `serde_json::to_writer` writes for the same
//! content (compact, same string escapes), which the tests check by re-serialising parsed lines.

/// JSON text being written into a byte buffer; commas are inserted automatically.
pub struct Json {
    buf: Vec<u8>,
    /// Whether the next value or key must be preceded by a comma.
    comma: bool,
}

impl Json {
    pub fn new() -> Json {
        Json {
            buf: Vec::with_capacity(4096),
            comma: false,
        }
    }

    /// Empties the buffer for the next document.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.comma = false;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    #[inline]
    fn sep(&mut self) {
        if self.comma {
            self.buf.push(b',');
        }
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.sep();
        self.buf.push(b'{');
        self.comma = false;
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.buf.push(b'}');
        self.comma = true;
        self
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.sep();
        self.buf.push(b'[');
        self.comma = false;
        self
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.buf.push(b']');
        self.comma = true;
        self
    }

    /// An object key; the value must follow.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.sep();
        escape_into(&mut self.buf, k);
        self.buf.push(b':');
        self.comma = false;
        self
    }

    pub fn string(&mut self, v: &str) -> &mut Self {
        self.sep();
        escape_into(&mut self.buf, v);
        self.comma = true;
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.sep();
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        self.comma = true;
        self
    }

    /// `"k": "v"`.
    pub fn field(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).string(v)
    }

    /// `"k": {` (close with [`Json::end_object`]).
    pub fn object_field(&mut self, k: &str) -> &mut Self {
        self.key(k).begin_object()
    }

    /// `"k": [` (close with [`Json::end_array`]).
    pub fn array_field(&mut self, k: &str) -> &mut Self {
        self.key(k).begin_array()
    }

    /// `"k": ["v"]`.
    pub fn single_string_array(&mut self, k: &str, v: &str) -> &mut Self {
        self.array_field(k).string(v).end_array()
    }
}

/// Bytes that need an escape in a JSON string: control characters, `"` and `\\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a JSON string literal, with serde_json's escapes.
fn escape_into(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Fast path: almost no string needs an escape.
    if !bytes
        .iter()
        .fold(false, |acc, &b| acc | NEEDS_ESCAPE[usize::from(b)])
    {
        buf.reserve(bytes.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(bytes);
        buf.push(b'"');
        return;
    }
    buf.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 0xf)]);
        } else {
            buf.extend_from_slice(esc);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_json() {
        let tricky = "a\"b\\c\nd\te\u{1}f\u{7f}g\u{2013}h\u{8}\u{c}\r";
        let mut j = Json::new();
        j.begin_object()
            .field("s", tricky)
            .array_field("a")
            .string("x")
            .bool(true)
            .begin_object()
            .end_object()
            .end_array()
            .object_field("o")
            .key("b")
            .bool(false)
            .end_object()
            .single_string_array("one", "v")
            .end_object();
        let expected = serde_json::json!({
            "s": tricky,
            "a": ["x", true, {}],
            "o": { "b": false },
            "one": ["v"],
        });
        assert_eq!(
            j.as_bytes(),
            serde_json::to_vec(&expected).unwrap().as_slice()
        );
        j.clear();
        j.begin_array().end_array();
        assert_eq!(j.as_bytes(), b"[]");
    }
}
