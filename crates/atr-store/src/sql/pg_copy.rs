//! PostgreSQL's binary `COPY … FROM STDIN` for many rows at once.
//!
//! A multi-row `INSERT` is bound parameter by parameter and planned per statement; at a million
//! rows that is most of a bulk load's time on PostgreSQL. `COPY` in the binary format sends each
//! row as length-prefixed fields that the server stores without parsing text, in one stream per
//! table. Rows are encoded straight from the statement arguments, so callers keep one row shape
//! for both dialects.

use sqlx::PgConnection;

use super::db::Arg;
use crate::StoreError;

/// Bytes buffered before they are sent: large enough that sends are few, small enough that a
/// million-row copy never holds much.
const SEND_AT: usize = 1 << 20;

/// The binary format's fixed header: signature, flags (no OIDs) and an empty extension area.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Copies `rows` into `table (columns)`. Every integer column must be `BIGINT` and every boolean
/// `BOOLEAN`: the binary format carries the server's own representation, and PostgreSQL refuses a
/// field of the wrong width instead of converting it.
pub(crate) async fn copy_rows<const N: usize>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    rows: impl IntoIterator<Item = [Arg; N]>,
) -> Result<u64, StoreError> {
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} {columns} FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let mut buf = Vec::with_capacity(SEND_AT + 64 * 1024);
    buf.extend_from_slice(HEADER);
    for row in rows {
        encode_row(&mut buf, &row)?;
        if buf.len() >= SEND_AT {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(SEND_AT + 64 * 1024);
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf).await?;
    Ok(copy.finish().await?)
}

fn encode_row(buf: &mut Vec<u8>, row: &[Arg]) -> Result<(), StoreError> {
    let fields = i16::try_from(row.len())
        .map_err(|_| StoreError::Corrupt("a COPY row has too many columns".into()))?;
    buf.extend_from_slice(&fields.to_be_bytes());
    for arg in row {
        match arg {
            Arg::Static(s) => field(buf, s.as_bytes())?,
            Arg::Text(s) => field(buf, s.as_bytes())?,
            Arg::OptText(Some(s)) => field(buf, s.as_bytes())?,
            Arg::Bytes(b) => field(buf, b)?,
            Arg::Int(i) | Arg::OptInt(Some(i)) => field(buf, &i.to_be_bytes())?,
            Arg::Bool(b) => field(buf, &[u8::from(*b)])?,
            Arg::OptText(None) | Arg::OptInt(None) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    Ok(())
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| StoreError::Corrupt("a value is too large for one COPY field".into()))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    Ok(())
}

/// Rows of a binary `COPY … TO STDOUT`, decoded as the chunks arrive: a row may straddle chunks,
/// so the incomplete tail of one chunk waits for the next.
///
/// Reading a million rows this way costs a fraction of a `SELECT` streamed through the driver
/// (which builds a row object per row and hands each across an async stream); the exports read
/// whole types and whole rosters like this.
pub(crate) struct CopyRows {
    pending: Vec<u8>,
    header_seen: bool,
    done: bool,
    fields: Vec<Option<std::ops::Range<usize>>>,
}

/// The signature and flags before the header's extension length.
const HEADER_FIXED: usize = 15;

impl CopyRows {
    pub(crate) fn new() -> Self {
        CopyRows {
            pending: Vec::new(),
            header_seen: false,
            done: false,
            fields: Vec::new(),
        }
    }

    /// Takes the next chunk of the stream and calls `each` with the fields of every row completed
    /// by it (`None` for SQL NULL).
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[Option<&[u8]>]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Most chunks hold whole rows: decode them in place and keep only the tail.
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut pos = 0;
        if !self.header_seen {
            if data.len() < HEADER_FIXED + 4 {
                self.pending = data.to_vec();
                return Ok(());
            }
            if &data[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(StoreError::Corrupt(
                    "a COPY stream without its signature".into(),
                ));
            }
            let ext = be_i32(&data[HEADER_FIXED..]) as usize;
            if data.len() < HEADER_FIXED + 4 + ext {
                self.pending = data.to_vec();
                return Ok(());
            }
            pos = HEADER_FIXED + 4 + ext;
            self.header_seen = true;
        }
        let mut values: Vec<Option<&[u8]>> = Vec::new();
        while !self.done {
            let Some(end) = self.row_at(data, pos)? else {
                break;
            };
            if end == pos + 2 {
                // The trailer: a field count of -1.
                self.done = true;
                pos = end;
                break;
            }
            values.clear();
            values.extend(self.fields.iter().map(|f| f.clone().map(|r| &data[r])));
            each(&values)?;
            pos = end;
        }
        self.pending = data[pos..].to_vec();
        Ok(())
    }

    /// Finds the row starting at `pos`: its end, with `fields` set, or `None` when it is not all
    /// there yet.
    fn row_at(&mut self, data: &[u8], pos: usize) -> Result<Option<usize>, StoreError> {
        if data.len() < pos + 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
        if count == -1 {
            return Ok(Some(pos + 2));
        }
        if count < 0 {
            return Err(StoreError::Corrupt(
                "a COPY row with a negative field count".into(),
            ));
        }
        self.fields.clear();
        let mut at = pos + 2;
        for _ in 0..count {
            if data.len() < at + 4 {
                return Ok(None);
            }
            let len = be_i32(&data[at..]);
            at += 4;
            if len < 0 {
                self.fields.push(None);
                continue;
            }
            let len = len as usize;
            if data.len() < at + len {
                return Ok(None);
            }
            self.fields.push(Some(at..at + len));
            at += len;
        }
        Ok(Some(at))
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A `TEXT` field.
pub(crate) fn text(field: Option<&[u8]>) -> Result<Option<&str>, StoreError> {
    field
        .map(|b| std::str::from_utf8(b).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// A `BIGINT` field.
pub(crate) fn bigint(field: Option<&[u8]>) -> Result<Option<i64>, StoreError> {
    field
        .map(|b| {
            <[u8; 8]>::try_from(b)
                .map(i64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("a BIGINT field is not 8 bytes".into()))
        })
        .transpose()
}

/// A `BOOLEAN` field.
pub(crate) fn boolean(field: Option<&[u8]>) -> Option<bool> {
    field.map(|b| b.first().is_some_and(|v| *v != 0))
}

/// `s` as an SQL string literal (`COPY` takes no bind parameters). PostgreSQL's standard
/// conforming strings take backslashes literally, so doubling quotes is the whole escape.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_encode_as_length_prefixed_fields_with_null_as_minus_one() {
        let mut buf = Vec::new();
        encode_row(
            &mut buf,
            &[
                Arg::Static("ab"),
                Arg::Int(1),
                Arg::OptText(None),
                Arg::Bool(true),
            ],
        )
        .unwrap();
        let expected: Vec<u8> = [
            &4i16.to_be_bytes()[..],
            &2i32.to_be_bytes(),
            b"ab",
            &8i32.to_be_bytes(),
            &1i64.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &1i32.to_be_bytes(),
            &[1],
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn copy_out_rows_decode_across_chunk_boundaries() {
        let mut stream = HEADER.to_vec();
        for (id, n) in [("a", 1i64), ("bé", 2)] {
            encode_row(
                &mut stream,
                &[Arg::from(id), Arg::Int(n), Arg::OptText(None)],
            )
            .unwrap();
        }
        stream.extend_from_slice(&(-1i16).to_be_bytes());
        // Every split point, including inside the header and inside a field.
        for cut in 0..stream.len() {
            let mut rows = CopyRows::new();
            let mut seen = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                rows.feed(part, |f| {
                    seen.push((
                        text(f[0]).unwrap().unwrap().to_string(),
                        bigint(f[1]).unwrap().unwrap(),
                        f[2].is_none(),
                    ));
                    Ok(())
                })
                .unwrap();
            }
            assert_eq!(
                seen,
                vec![("a".to_string(), 1, true), ("bé".to_string(), 2, true)],
                "cut at {cut}"
            );
            assert!(rows.done);
        }
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
    }
}
