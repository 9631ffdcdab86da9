//! Turning stored versions into response bytes: most resources are their stored bytes as they
//! are; a Group is its header followed by its members streamed from the rows, so a 1M-member
//! Group is never held in memory.

use atr_model::ResourceType;
use atr_model::group::is_attribution_list;
use atr_model::meta::{drop_text, summarize};
use atr_store::{MemberStream, Store, StoreError, StoredResource};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde_json::Value;

use crate::search_params::Summary;

/// A resource ready to be written out.
pub enum Rendered {
    Whole(Bytes),
    /// `head` ends in `"member":[`; the members follow, then `]}`.
    Group {
        head: Bytes,
        members: MemberStream,
    },
}

pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

fn reserialize(body: &[u8], edit: impl FnOnce(&mut Value)) -> Result<(Value, Bytes), StoreError> {
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    edit(&mut v);
    let bytes = serde_json::to_vec(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((v, Bytes::from(bytes)))
}

/// Renders a stored, not deleted version under `_summary`.
pub fn render(
    store: &dyn Store,
    r: &StoredResource,
    summary: Summary,
) -> Result<Rendered, StoreError> {
    let members = r.rtype == ResourceType::Group && r.member_count.unwrap_or(0) > 0;
    let (header, head) = match summary {
        Summary::True | Summary::Count => {
            return Ok(Rendered::Whole(reserialize(&r.body, summarize)?.1));
        }
        Summary::Data => reserialize(&r.body, drop_text)?,
        Summary::Full if !members => return Ok(Rendered::Whole(r.body.clone())),
        Summary::Full => {
            let header: Value =
                serde_json::from_slice(&r.body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            (header, r.body.clone())
        }
    };
    if !members {
        return Ok(Rendered::Whole(head));
    }
    // The stored header is compact JSON ending in `}`: reopen it for the member array.
    let Some(open) = head.len().checked_sub(1).filter(|_| head.ends_with(b"}")) else {
        return Err(StoreError::Corrupt(format!(
            "Group/{} header is not a JSON object",
            r.id
        )));
    };
    let mut prefix = Vec::with_capacity(open + 12);
    prefix.extend_from_slice(&head[..open]);
    prefix.extend_from_slice(b",\"member\":[");
    let stream = store.stream_members(&r.id, r.version, is_attribution_list(&header));
    Ok(Rendered::Group {
        head: Bytes::from(prefix),
        members: stream,
    })
}

impl Rendered {
    pub fn into_stream(self) -> ByteStream {
        match self {
            Rendered::Whole(b) => stream::once(async move { Ok(b) }).boxed(),
            Rendered::Group { head, members } => stream::once(async move { Ok(head) })
                .chain(members)
                .chain(stream::once(async { Ok(Bytes::from_static(b"]}")) }))
                .boxed(),
        }
    }
}
