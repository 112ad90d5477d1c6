//! The binary encoding of one stored update (a "record"), shared by every backend that keeps
//! updates as bytes (redb's `log` table, the Redis stream, the JetStream stream).
//!
//! A record is `format u8 (1) | published_at_ms u64 LE | flags u8 (1 private, 2 type, 4 retry) |
//! [retry u64 LE] | id | [type] | topic count u32 LE, topics | data | frame`, each string a u32 LE
//! length then its bytes. The SSE frame is stored, so a replay never re-encodes. The sequence
//! number is not part of the record: each backend keeps it as the record's key. This module is
//! pure code: no I/O.

use bytes::Bytes;

use super::StoreError;
use crate::update::Update;

const RECORD_FORMAT: u8 = 1;
const FLAG_PRIVATE: u8 = 1;
const FLAG_TYPE: u8 = 2;
const FLAG_RETRY: u8 = 4;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| StoreError::Backend("update too large to store".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Encodes everything but `seq` (the log key).
pub(crate) fn encode(update: &Update, out: &mut Vec<u8>) -> Result<(), StoreError> {
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&update.published_at_ms.to_le_bytes());
    let mut flags = 0;
    if update.private {
        flags |= FLAG_PRIVATE;
    }
    if update.event_type.is_some() {
        flags |= FLAG_TYPE;
    }
    if update.retry.is_some() {
        flags |= FLAG_RETRY;
    }
    out.push(flags);
    if let Some(retry) = update.retry {
        out.extend_from_slice(&retry.to_le_bytes());
    }
    put_bytes(out, update.id.as_bytes())?;
    if let Some(kind) = &update.event_type {
        put_bytes(out, kind.as_bytes())?;
    }
    let count = u32::try_from(update.topics.len())
        .map_err(|_| StoreError::Backend("too many topics to store".into()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for topic in &update.topics {
        put_bytes(out, topic.as_bytes())?;
    }
    put_bytes(out, update.data.as_bytes())?;
    put_bytes(out, &update.frame)
}

/// A stored record, borrowed from the page it was read from.
pub(crate) struct Record<'a> {
    pub published_at_ms: u64,
    pub private: bool,
    pub retry: Option<u64>,
    pub event_type: Option<&'a str>,
    pub id: &'a str,
    pub topics: Vec<&'a str>,
    pub data: &'a str,
    pub frame: &'a [u8],
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.rest.len() < len {
            return None;
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Option<Record<'_>> {
    let mut reader = Reader { rest: bytes };
    if reader.byte()? != RECORD_FORMAT {
        return None;
    }
    let published_at_ms = reader.u64()?;
    let flags = reader.byte()?;
    let retry = if flags & FLAG_RETRY != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let id = reader.str()?;
    let event_type = if flags & FLAG_TYPE != 0 {
        Some(reader.str()?)
    } else {
        None
    };
    let count = reader.u32()?;
    let mut topics = Vec::with_capacity(usize::try_from(count.min(64)).ok()?);
    for _ in 0..count {
        topics.push(reader.str()?);
    }
    let data = reader.str()?;
    let frame = reader.bytes()?;
    if !reader.rest.is_empty() {
        return None;
    }
    Some(Record {
        published_at_ms,
        private: flags & FLAG_PRIVATE != 0,
        retry,
        event_type,
        id,
        topics,
        data,
        frame,
    })
}

/// The publication time alone, without decoding the rest.
pub(crate) fn published_at(bytes: &[u8]) -> Option<u64> {
    if bytes.first() != Some(&RECORD_FORMAT) {
        return None;
    }
    bytes.get(1..9)?.try_into().ok().map(u64::from_le_bytes)
}

impl Record<'_> {
    /// The update this record holds, at `seq`.
    pub(crate) fn to_update(&self, seq: u64) -> Update {
        Update {
            seq,
            id: self.id.to_owned(),
            topics: self.topics.iter().map(|t| (*t).to_owned()).collect(),
            data: self.data.to_owned(),
            event_type: self.event_type.map(str::to_owned),
            retry: self.retry,
            private: self.private,
            published_at_ms: self.published_at_ms,
            frame: Bytes::copy_from_slice(self.frame),
            topic_frame: crate::update::TopicFrame::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::update::Draft;

    #[test]
    fn a_record_round_trips_every_field() {
        let update = Update::from_draft(Draft {
            topics: vec!["a".into(), "b/é".into()],
            data: "line 1\nline 2".into(),
            id: Some("custom".into()),
            event_type: Some("kind".into()),
            retry: Some(1500),
            private: true,
        })
        .unwrap();
        let mut bytes = Vec::new();
        encode(&update, &mut bytes).unwrap();
        let record = parse(&bytes).unwrap();
        assert_eq!(published_at(&bytes), Some(update.published_at_ms));
        let back = record.to_update(42);
        assert_eq!(back, Update { seq: 42, ..update });
        assert!(parse(&bytes[..bytes.len() - 1]).is_none());
        assert!(parse(b"").is_none());
    }
}
