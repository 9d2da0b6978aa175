//! The client's on-disk queue of encoded (already randomized) reports.
//!
//! Layout of the queue directory:
//! - `open.log`: write-ahead log of the open (not yet sealed) batch. It starts with
//!   the 8-byte little-endian sequence number the batch will get when sealed,
//!   followed by one entry per recorded record: `len: u32 LE`, `xxh3_64(payload): u64
//!   LE`, `payload` (a protobuf `SubmitRequest` with no batch id holding that
//!   record's reports). A torn last entry (crash mid-write) fails its checksum and
//!   is dropped; the entries before it are kept.
//! - `batch-<seq>.pb`: a sealed batch, exactly the protobuf `SubmitRequest` sent to
//!   the server, batch id included. Written to a `.tmp` file, synced and renamed,
//!   so a sealed batch on disk is always complete.
//! - `rejected/`: batches the server refused permanently (e.g. INVALID_ARGUMENT),
//!   kept for inspection rather than deleted; only the newest
//!   [`MAX_REJECTED`] are kept, so a misconfigured app cannot fill the disk.
//! - `metrics.pb`: the last `GetMetricsResponse`, so a device can encode offline.
//!
//! # Guarantees
//! - Only protobuf `Report`s are stored: randomized outputs, never raw values.
//! - A batch id (16 random bytes from [`LdpRng::from_os`]) is chosen when the batch
//!   is sealed and stored with it: every retry, including after a crash between
//!   send and acknowledgement, sends the same id, and the server counts it once.
//! - Sealing is crash-safe: if the process dies after the batch file is renamed
//!   but before `open.log` is reset, recovery sees that batch `seq` exists and
//!   discards the stale log instead of sealing its reports a second time.
//! - A process crash loses no recorded report (each record's entry is written to
//!   the kernel before [`Queue::append`] returns). A power loss can lose the
//!   records appended since the last seal, which is the only point the queue
//!   calls `fsync`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ldp_proto::v1 as pb;
use prost::Message;

use crate::LdpRng;
use crate::client::ClientError;

const OPEN_LOG: &str = "open.log";
const METRICS: &str = "metrics.pb";
const REJECTED: &str = "rejected";
const ENTRY_HEADER: usize = 12;
/// Most refused batches kept in `rejected/` (the oldest are deleted first).
pub(crate) const MAX_REJECTED: usize = 64;

/// A sealed batch waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    pub(crate) seq: u64,
    pub(crate) reports: usize,
}

/// The queue; not thread-safe by itself (the client wraps it in a mutex).
#[derive(Debug)]
pub(crate) struct Queue {
    dir: PathBuf,
    open: Vec<pb::Report>,
    log: File,
    open_seq: u64,
    sealed: VecDeque<Sealed>,
    id_rng: LdpRng,
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir` and recovers what a previous
    /// process left: sealed batches in order, and the open batch from `open.log`.
    pub(crate) fn open(dir: &Path) -> Result<Self, ClientError> {
        fs::create_dir_all(dir.join(REJECTED)).map_err(|e| io(dir, e))?;
        let mut sealed = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                // An interrupted seal: its reports are still in open.log.
                fs::remove_file(&path).map_err(|e| io(&path, e))?;
            } else if let Some(seq) = parse_batch_name(name) {
                let request = read_batch(&path)?;
                sealed.push(Sealed {
                    seq,
                    reports: request.reports.len(),
                });
            }
        }
        sealed.sort_by_key(|s| s.seq);
        let next_free = sealed.last().map_or(0, |s| s.seq + 1);
        let log_path = dir.join(OPEN_LOG);
        let (logged_seq, open) = read_log(&log_path)?;
        let (open_seq, open) = match logged_seq {
            // The log's batch was sealed before the crash: its entries are stale.
            Some(seq) if sealed.iter().any(|s| s.seq == seq) => (next_free, Vec::new()),
            Some(seq) => (seq.max(next_free), open),
            None => (next_free, Vec::new()),
        };
        let log = rewrite_log(&log_path, open_seq, &open)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            open,
            log,
            open_seq,
            sealed: sealed.into(),
            id_rng: LdpRng::from_os(),
        })
    }

    /// Appends one record's reports to the open batch and its write-ahead log.
    pub(crate) fn append(&mut self, reports: Vec<pb::Report>) -> Result<(), ClientError> {
        let request = pb::SubmitRequest {
            batch_id: Vec::new(),
            reports,
        };
        let payload = request.encode_to_vec();
        let mut entry = Vec::with_capacity(ENTRY_HEADER + payload.len());
        entry.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        entry.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        entry.extend_from_slice(&payload);
        self.log
            .write_all(&entry)
            .map_err(|e| io(&self.dir.join(OPEN_LOG), e))?;
        self.open.extend(request.reports);
        Ok(())
    }

    /// Reports in the open batch.
    pub(crate) fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Seals the open batch (if it has reports): assigns a fresh random batch id,
    /// writes `batch-<seq>.pb` durably, then resets the log for the next batch.
    pub(crate) fn seal(&mut self) -> Result<Option<u64>, ClientError> {
        if self.open.is_empty() {
            return Ok(None);
        }
        let mut batch_id = vec![0u8; 16];
        rand::Rng::fill_bytes(&mut self.id_rng, &mut batch_id);
        let request = pb::SubmitRequest {
            batch_id,
            reports: std::mem::take(&mut self.open),
        };
        let seq = self.open_seq;
        let path = self.batch_path(seq);
        let tmp = path.with_extension("tmp");
        write_synced(&tmp, &request.encode_to_vec())?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        sync_dir(&self.dir)?;
        self.sealed.push_back(Sealed {
            seq,
            reports: request.reports.len(),
        });
        self.open_seq = seq + 1;
        self.log = rewrite_log(&self.dir.join(OPEN_LOG), self.open_seq, &[])?;
        Ok(Some(seq))
    }

    /// The oldest sealed batch, read back from disk.
    pub(crate) fn front(&self) -> Result<Option<(u64, pb::SubmitRequest)>, ClientError> {
        let Some(s) = self.sealed.front() else {
            return Ok(None);
        };
        Ok(Some((s.seq, read_batch(&self.batch_path(s.seq))?)))
    }

    /// Removes batch `seq` after the server acknowledged it.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<(), ClientError> {
        let path = self.batch_path(seq);
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
        self.sealed.retain(|s| s.seq != seq);
        Ok(())
    }

    /// Moves batch `seq` to `rejected/` after a permanent refusal.
    pub(crate) fn reject(&mut self, seq: u64) -> Result<(), ClientError> {
        let path = self.batch_path(seq);
        let to = self
            .dir
            .join(REJECTED)
            .join(path.file_name().unwrap_or_default());
        fs::rename(&path, &to).map_err(|e| io(&path, e))?;
        self.sealed.retain(|s| s.seq != seq);
        self.prune_rejected()
    }

    /// Deletes the oldest refused batches beyond [`MAX_REJECTED`].
    fn prune_rejected(&self) -> Result<(), ClientError> {
        let dir = self.dir.join(REJECTED);
        let mut kept: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let seq = path
                    .file_name()?
                    .to_str()?
                    .strip_prefix("batch-")?
                    .strip_suffix(".pb")?
                    .parse()
                    .ok()?;
                Some((seq, path))
            })
            .collect();
        if kept.len() <= MAX_REJECTED {
            return Ok(());
        }
        kept.sort_unstable();
        for (_, path) in &kept[..kept.len() - MAX_REJECTED] {
            fs::remove_file(path).map_err(|e| io(path, e))?;
        }
        Ok(())
    }

    /// Sealed batches and their reports still waiting for an acknowledgement.
    pub(crate) fn pending(&self) -> (usize, usize) {
        (
            self.sealed.len(),
            self.sealed.iter().map(|s| s.reports).sum(),
        )
    }

    /// Stores the server's metric list for offline use.
    pub(crate) fn save_metrics(
        &self,
        response: &pb::GetMetricsResponse,
    ) -> Result<(), ClientError> {
        let path = self.dir.join(METRICS);
        let tmp = path.with_extension("tmp");
        write_synced(&tmp, &response.encode_to_vec())?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    /// The metric list saved by the last successful fetch, if any.
    pub(crate) fn load_metrics(&self) -> Result<Option<pb::GetMetricsResponse>, ClientError> {
        let path = self.dir.join(METRICS);
        match fs::read(&path) {
            Ok(bytes) => pb::GetMetricsResponse::decode(bytes.as_slice())
                .map(Some)
                .map_err(|e| ClientError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn batch_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("batch-{seq:020}.pb"))
    }
}

fn parse_batch_name(name: &str) -> Option<u64> {
    name.strip_prefix("batch-")?
        .strip_suffix(".pb")?
        .parse()
        .ok()
}

fn read_batch(path: &Path) -> Result<pb::SubmitRequest, ClientError> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    pb::SubmitRequest::decode(bytes.as_slice())
        .map_err(|e| ClientError::Corrupt(format!("{}: {e}", path.display())))
}

/// Reads the log: its batch sequence number and the reports of every intact entry.
fn read_log(path: &Path) -> Result<(Option<u64>, Vec<pb::Report>), ClientError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(io(path, e)),
    }
    let Some(header) = bytes.get(..8) else {
        return Ok((None, Vec::new()));
    };
    let seq = u64::from_le_bytes(header.try_into().unwrap_or_default());
    let mut reports = Vec::new();
    let mut rest = &bytes[8..];
    while rest.len() >= ENTRY_HEADER {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(rest[4..12].try_into().unwrap_or_default());
        let Some(payload) = rest.get(ENTRY_HEADER..ENTRY_HEADER + len) else {
            break; // torn entry
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != sum {
            break;
        }
        let Ok(entry) = pb::SubmitRequest::decode(payload) else {
            break;
        };
        reports.extend(entry.reports);
        rest = &rest[ENTRY_HEADER + len..];
    }
    Ok((Some(seq), reports))
}

/// Replaces the log with a header for batch `seq` and one entry holding `reports`
/// (the intact entries recovered from a previous log); returns it open for
/// appending. Recovered entries are synced before the old log is replaced. An
/// empty log (the reset after a seal) is not: if it is lost, recovery finds
/// either the stale log, whose batch file exists so it is discarded, or no
/// header at all; neither loses nor repeats a report, and one fsync per batch
/// is saved.
fn rewrite_log(path: &Path, seq: u64, reports: &[pb::Report]) -> Result<File, ClientError> {
    let mut bytes = seq.to_le_bytes().to_vec();
    if !reports.is_empty() {
        let payload = pb::SubmitRequest {
            batch_id: Vec::new(),
            reports: reports.to_vec(),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    let tmp = path.with_extension("log.tmp");
    if reports.is_empty() {
        fs::write(&tmp, &bytes).map_err(|e| io(&tmp, e))?;
    } else {
        write_synced(&tmp, &bytes)?;
    }
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    let mut f = File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn io(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(i: u32) -> pb::Report {
        pb::Report {
            metric_id: 1,
            metric_version: 1,
            epoch: 0,
            payload: Some(pb::report::Payload::Index(i)),
        }
    }

    #[test]
    fn open_batch_survives_a_crash_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(dir.path()).unwrap();
            q.append(vec![report(1), report(2)]).unwrap();
            q.append(vec![report(3)]).unwrap();
        } // crash: nothing sealed
        // Half an entry, as if the process died mid-write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(OPEN_LOG))
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3]).unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.open_len(), 3);
        q.append(vec![report(4)]).unwrap();
        assert_eq!(q.seal().unwrap(), Some(0));
        let (seq, batch) = q.front().unwrap().unwrap();
        assert_eq!(seq, 0);
        assert_eq!(batch.batch_id.len(), 16);
        assert_eq!(
            batch.reports,
            vec![report(1), report(2), report(3), report(4)]
        );
    }

    #[test]
    fn sealed_batches_keep_their_id_and_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<Vec<u8>> = {
            let mut q = Queue::open(dir.path()).unwrap();
            for i in 0..3 {
                q.append(vec![report(i)]).unwrap();
                q.seal().unwrap();
            }
            assert_eq!(q.pending(), (3, 3));
            let (_, first) = q.front().unwrap().unwrap();
            q.ack(0).unwrap();
            let (_, second) = q.front().unwrap().unwrap();
            vec![first.batch_id, second.batch_id]
        };
        let mut q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.pending(), (2, 2));
        let (seq, batch) = q.front().unwrap().unwrap();
        assert_eq!((seq, &batch.batch_id), (1, &ids[1]));
        assert_ne!(ids[0], ids[1]);
        q.reject(1).unwrap();
        assert!(
            dir.path()
                .join(REJECTED)
                .join("batch-00000000000000000001.pb")
                .exists()
        );
        q.append(vec![report(9)]).unwrap();
        assert_eq!(q.seal().unwrap(), Some(3), "sequence numbers never repeat");
    }

    #[test]
    fn a_crash_between_rename_and_log_reset_does_not_seal_twice() {
        let dir = tempfile::tempdir().unwrap();
        let stale_log = {
            let mut q = Queue::open(dir.path()).unwrap();
            q.append(vec![report(1)]).unwrap();
            let log = fs::read(dir.path().join(OPEN_LOG)).unwrap();
            q.seal().unwrap();
            log
        };
        // Put back the log as it was before the reset.
        fs::write(dir.path().join(OPEN_LOG), stale_log).unwrap();
        let mut q = Queue::open(dir.path()).unwrap();
        assert_eq!(q.open_len(), 0);
        assert_eq!(q.pending(), (1, 1));
        assert_eq!(q.seal().unwrap(), None);
    }
}
