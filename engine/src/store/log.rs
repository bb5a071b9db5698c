//! The usage record log: append-only segment files next to the sled database.
//!
//! Usage records are written once and read rarely (reports use the aggregates), at the
//! gateway's full request rate. Kept in sled they cost several microseconds each and grow its
//! in-memory tree without bound; here a record costs its encoding and a share of one
//! `fdatasync` per flush.
//!
//! Layout: `<store>/records/<seq>.log`, `seq` a zero-padded u32 from 1. A segment is a run of
//! frames `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`, the payload a
//! [`UsageRecord`] encoding. A new segment starts when the current one passes
//! [`SEGMENT_BYTES`]; a batch never spans two segments.
//!
//! Crash safety comes from the order of writes (see `SledStore::append_usage`): frames are
//! appended and synced first, then the aggregates and the log position they include
//! ([`Position`]) are committed in one sled batch. On open, frames past that position are
//! replayed into the aggregates and a torn last frame is cut off.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::UsageRecord;
use super::StoreError;

/// Size after which the next batch starts a new segment.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Largest frame payload accepted when reading (a record is well under 1 KiB; names are
/// bounded by the admin API and the config).
const MAX_FRAME: u32 = 1 << 20;
const FRAME_HEAD: usize = 8;

/// A point in the log: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// Segment number (0 before the first segment exists).
    pub segment: u32,
    /// Byte offset within the segment.
    pub offset: u64,
}

impl Position {
    /// Encoded length.
    pub const LEN: usize = 12;

    /// Fixed-size encoding (big-endian).
    pub fn encode(self) -> [u8; Position::LEN] {
        let mut out = [0u8; Position::LEN];
        out[..4].copy_from_slice(&self.segment.to_be_bytes());
        out[4..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    /// Inverse of [`Position::encode`].
    pub fn decode(bytes: &[u8]) -> Option<Position> {
        let bytes: &[u8; Position::LEN] = bytes.try_into().ok()?;
        Some(Position {
            segment: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            offset: u64::from_be_bytes([
                bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11],
            ]),
        })
    }
}

/// The open log: the segment being appended to.
#[derive(Debug)]
pub struct RecordLog {
    dir: PathBuf,
    /// The last segment, open for appending, and its length.
    tail: Option<(u32, File, u64)>,
    /// Size after which a new segment starts ([`SEGMENT_BYTES`]; smaller in tests).
    pub(super) segment_bytes: u64,
    /// Reused frame buffer.
    buf: Vec<u8>,
}

/// What one append wrote.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// Where the batch ends (the new checkpoint once its aggregates are committed).
    pub end: Position,
}

impl RecordLog {
    /// Open (creating) the log directory. Nothing is read or repaired here: see
    /// [`RecordLog::recover`].
    pub fn open(store_dir: &Path) -> Result<RecordLog, StoreError> {
        let dir = store_dir.join("records");
        fs::create_dir_all(&dir)?;
        let tail = match segments(&dir)?.last() {
            Some(&seq) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(segment_path(&dir, seq))?;
                let len = file.metadata()?.len();
                Some((seq, file, len))
            }
            None => None,
        };
        Ok(RecordLog {
            dir,
            tail,
            segment_bytes: SEGMENT_BYTES,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// The segment numbers on disk, oldest first.
    pub fn segments(&self) -> Result<Vec<u32>, StoreError> {
        segments(&self.dir)
    }

    /// Read every whole record from `from` to the end of the log, calling `each` with the
    /// record and the position just after it. Returns the end of the last whole frame: the
    /// log's valid end. Stops (without error) at a torn or corrupt frame in the LAST segment,
    /// which a crash mid-append leaves; the same in an earlier segment is `Corrupt`, as is a
    /// segment shorter than `from`.
    pub fn read_from(
        &self,
        from: Position,
        mut each: impl FnMut(UsageRecord, Position) -> Result<(), StoreError>,
    ) -> Result<Position, StoreError> {
        let all = self.segments()?;
        let last = all.last().copied().unwrap_or(0);
        let mut end = from;
        for seq in all.into_iter().filter(|&s| s >= from.segment) {
            let start = if seq == from.segment { from.offset } else { 0 };
            let offset = self.read_segment_from(seq, start, seq == last, &mut each)?;
            end = Position {
                segment: seq,
                offset,
            };
        }
        Ok(end)
    }

    /// Every whole record of one segment, in the order written. Like
    /// [`RecordLog::read_from`], a torn frame ends the last segment quietly.
    pub fn read_segment(
        &self,
        seq: u32,
        mut each: impl FnMut(UsageRecord) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let last = self.segments()?.last().copied().unwrap_or(0);
        self.read_segment_from(seq, 0, seq == last, &mut |r, _| each(r))?;
        Ok(())
    }

    /// Read segment `seq` from `start`; returns the offset after its last whole frame.
    fn read_segment_from(
        &self,
        seq: u32,
        start: u64,
        is_last: bool,
        each: &mut dyn FnMut(UsageRecord, Position) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let path = segment_path(&self.dir, seq);
        let mut file = File::open(&path)?;
        if file.metadata()?.len() < start {
            return Err(corrupt(&path, "shorter than the committed position"));
        }
        file.seek(SeekFrom::Start(start))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut at = start;
        let mut payload = Vec::new();
        loop {
            match read_frame(&mut reader, &mut payload)? {
                Frame::Whole => {
                    let record = UsageRecord::decode(&payload)
                        .map_err(|_| corrupt(&path, "a checksummed record does not decode"))?;
                    at += (FRAME_HEAD + payload.len()) as u64;
                    each(
                        record,
                        Position {
                            segment: seq,
                            offset: at,
                        },
                    )?;
                }
                Frame::End => return Ok(at),
                Frame::Torn if is_last => return Ok(at),
                Frame::Torn => return Err(corrupt(&path, "a torn frame before the last segment")),
            }
        }
    }

    /// Cut the log back to `end` (the valid end [`RecordLog::read_from`] found), dropping a
    /// torn last frame so new frames follow whole ones.
    pub fn truncate_to(&mut self, end: Position) -> Result<(), StoreError> {
        if let Some((seq, file, len)) = &mut self.tail {
            if *seq == end.segment && *len > end.offset {
                file.set_len(end.offset)?;
                file.sync_all()?;
                *len = end.offset;
            }
        }
        Ok(())
    }

    /// Append `records` as frames to the tail segment (starting a new one first if it is
    /// full) and make them durable (`fdatasync`) before returning.
    pub fn append(&mut self, records: &[UsageRecord]) -> Result<Appended, StoreError> {
        let needs_new = match &self.tail {
            None => true,
            Some((_, _, len)) => *len >= self.segment_bytes,
        };
        if needs_new {
            let seq = self.tail.as_ref().map_or(1, |(s, _, _)| s + 1);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(segment_path(&self.dir, seq))?;
            // The new file's directory entry must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
            self.tail = Some((seq, file, 0));
        }
        let Some((seq, file, len)) = &mut self.tail else {
            unreachable!("a tail segment was just ensured");
        };
        self.buf.clear();
        for r in records {
            let head = self.buf.len();
            self.buf.extend_from_slice(&[0u8; FRAME_HEAD]);
            r.encode(&mut self.buf);
            let payload = &self.buf[head + FRAME_HEAD..];
            let length = payload.len() as u32;
            let crc = crc32fast::hash(payload);
            self.buf[head..head + 4].copy_from_slice(&length.to_le_bytes());
            self.buf[head + 4..head + 8].copy_from_slice(&crc.to_le_bytes());
        }
        file.seek(SeekFrom::Start(*len))?;
        file.write_all(&self.buf)?;
        file.sync_data()?;
        *len += self.buf.len() as u64;
        Ok(Appended {
            end: Position {
                segment: *seq,
                offset: *len,
            },
        })
    }
}

enum Frame {
    Whole,
    End,
    Torn,
}

fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Result<Frame, StoreError> {
    let mut head = [0u8; FRAME_HEAD];
    match read_full(reader, &mut head)? {
        0 => return Ok(Frame::End),
        n if n < FRAME_HEAD => return Ok(Frame::Torn),
        _ => {}
    }
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if length == 0 || length > MAX_FRAME {
        return Ok(Frame::Torn);
    }
    payload.resize(length as usize, 0);
    if read_full(reader, payload)? < payload.len() || crc32fast::hash(payload) != crc {
        return Ok(Frame::Torn);
    }
    Ok(Frame::Whole)
}

/// Read until `buf` is full or the end; how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}.log"))
}

fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u32>() {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn corrupt(path: &Path, reason: &'static str) -> StoreError {
    StoreError::Corrupt {
        key: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(i: u64) -> UsageRecord {
        UsageRecord {
            time_ms: 1_700_000_000_000 + i,
            request_id: format!("req-{i}"),
            key: "k".into(),
            user: None,
            team: Some("ml".into()),
            org: None,
            model: "gpt-4o-mini".into(),
            deployment: "mock/gpt-4o-mini".into(),
            input_tokens: i,
            output_tokens: 2 * i,
            cached_tokens: 0,
            cost: 10 * i,
            latency_us: 100,
            status: 200,
            estimated: false,
            price_unknown: false,
            guardrails: Vec::new(),
        }
    }

    fn all(log: &RecordLog) -> (Vec<u64>, Position) {
        let mut seen = Vec::new();
        let end = log
            .read_from(Position::default(), |r, _| {
                seen.push(r.input_tokens);
                Ok(())
            })
            .unwrap();
        (seen, end)
    }

    #[test]
    fn appends_read_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::open(dir.path()).unwrap();
        let a = log.append(&[rec(1), rec(2)]).unwrap();
        let b = log.append(&[rec(3)]).unwrap();
        assert_eq!(a.end.segment, 1);
        assert!(b.end.offset > a.end.offset);
        assert_eq!(all(&log), (vec![1, 2, 3], b.end));

        // Resume from a position: only what follows it.
        let mut after = Vec::new();
        log.read_from(a.end, |r, _| {
            after.push(r.input_tokens);
            Ok(())
        })
        .unwrap();
        assert_eq!(after, [3]);

        // A crash mid-append leaves half a frame: readers stop before it, truncation drops it,
        // and the next append follows the whole frames.
        let path = segment_path(&dir.path().join("records"), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut log = RecordLog::open(dir.path()).unwrap();
        let (seen, end) = all(&log);
        assert_eq!((seen, end), (vec![1, 2, 3], b.end));
        log.truncate_to(end).unwrap();
        log.append(&[rec(4)]).unwrap();
        assert_eq!(all(&log).0, [1, 2, 3, 4]);
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RecordLog::open(dir.path()).unwrap();
        log.append(&[rec(1), rec(2)]).unwrap();
        let path = segment_path(&dir.path().join("records"), 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        assert_eq!(all(&log).0, [1]);
    }

    #[test]
    fn position_round_trips() {
        let p = Position {
            segment: 7,
            offset: 1 << 40,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        assert_eq!(Position::decode(&[1, 2]), None);
    }
}
