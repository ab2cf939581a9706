//! How much an SQLite database holds, read from its files without SQLite: the header of page 1
//! (page size, page count, free pages) as of the last transaction committed to the WAL, or to
//! the main file when the WAL is empty. So the figures are exact whether or not the hub
//! checkpointed before it stopped.

use std::path::Path;

/// Size of an SQLite database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbSize {
    /// Bytes the database file would have after a checkpoint (pages × page size).
    pub file: u64,
    /// Bytes in pages that hold data (file minus free pages).
    pub used: u64,
    /// Bytes of WAL on disk (0 after a clean checkpoint).
    pub wal: u64,
}

impl DbSize {
    /// Reads `db` and `db-wal`.
    pub fn read(db: &Path) -> std::io::Result<DbSize> {
        let main = std::fs::read(db)?;
        let wal = std::fs::read(format!("{}-wal", db.display())).unwrap_or_default();
        Ok(size(&main, &wal).unwrap_or(DbSize {
            file: main.len() as u64,
            used: main.len() as u64,
            wal: wal.len() as u64,
        }))
    }
}

impl std::fmt::Display for DbSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        write!(f, "{:.2} MB ({:.2} MB in use", mb(self.file), mb(self.used))?;
        if self.wal > 0 {
            write!(f, ", {:.2} MB WAL left not checkpointed", mb(self.wal))?;
        }
        write!(f, ")")
    }
}

fn be32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_be_bytes(b[at..at + 4].try_into().unwrap()))
}

/// The size from the main file and its WAL (empty when none).
pub fn size(main: &[u8], wal: &[u8]) -> Option<DbSize> {
    if main.len() < 100 || !main.starts_with(b"SQLite format 3\0") {
        return None;
    }
    let page_size = match u16::from_be_bytes([main[16], main[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let (header, pages) = match latest_committed_header(wal) {
        Some((header, pages)) => (header, pages),
        None => (&main[..100], be32(main, 28)),
    };
    let free = be32(header, 36);
    Some(DbSize {
        file: pages * page_size,
        used: pages.saturating_sub(free) * page_size,
        wal: wal.len() as u64,
    })
}

/// The first 100 bytes of page 1 and the page count as of the WAL's last commit, when the WAL
/// holds a committed copy of page 1. Frames are taken while their salts match the WAL header
/// (later ones belong to an older generation of the file); checksums are not verified, which is
/// fine after a clean shutdown.
fn latest_committed_header(wal: &[u8]) -> Option<(&[u8], u64)> {
    const WAL_HEADER: usize = 32;
    const FRAME_HEADER: usize = 24;
    if wal.len() < WAL_HEADER || !matches!(be32(wal, 0), 0x377f_0682 | 0x377f_0683) {
        return None;
    }
    let page_size = be32(wal, 8) as usize;
    let salts = &wal[16..24];
    let (mut pending, mut committed) = (None, None);
    let mut at = WAL_HEADER;
    while at + FRAME_HEADER + page_size <= wal.len() && &wal[at + 8..at + 16] == salts {
        let page = &wal[at + FRAME_HEADER..at + FRAME_HEADER + page_size];
        if be32(wal, at) == 1 {
            pending = Some(&page[..100]);
        }
        let commit_pages = be32(wal, at + 4);
        if commit_pages != 0 {
            if let Some(header) = pending.take() {
                committed = Some((header, commit_pages));
            } else if let Some((header, _)) = committed {
                committed = Some((header, commit_pages));
            }
        }
        at += FRAME_HEADER + page_size;
    }
    committed
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 512;

    fn header(pages: u32, free: u32) -> Vec<u8> {
        let mut page = vec![0u8; PAGE];
        page[..16].copy_from_slice(b"SQLite format 3\0");
        page[16..18].copy_from_slice(&(PAGE as u16).to_be_bytes());
        page[28..32].copy_from_slice(&pages.to_be_bytes());
        page[36..40].copy_from_slice(&free.to_be_bytes());
        page
    }

    fn wal(frames: &[(u32, u32, Vec<u8>)], salt: u32) -> Vec<u8> {
        let mut wal = vec![0u8; 32];
        wal[..4].copy_from_slice(&0x377f_0682u32.to_be_bytes());
        wal[8..12].copy_from_slice(&(PAGE as u32).to_be_bytes());
        wal[16..20].copy_from_slice(&salt.to_be_bytes());
        for (page_no, commit, page) in frames {
            let mut frame = vec![0u8; 24];
            frame[..4].copy_from_slice(&page_no.to_be_bytes());
            frame[4..8].copy_from_slice(&commit.to_be_bytes());
            frame[8..12].copy_from_slice(&salt.to_be_bytes());
            wal.extend(frame);
            wal.extend(page);
        }
        wal
    }

    #[test]
    fn without_a_wal_the_main_header_counts() {
        let s = size(&header(10, 3), &[]).unwrap();
        assert_eq!((s.file, s.used, s.wal), (10 * 512, 7 * 512, 0));
        assert_eq!(size(b"not a database", &[]), None);
    }

    #[test]
    fn the_last_committed_page_one_in_the_wal_wins() {
        let frames = [
            (1, 0, header(12, 2)),
            (5, 12, vec![0; PAGE]),
            // Committed later without touching page 1: the page count still moves.
            (7, 14, vec![0; PAGE]),
            // Not committed: ignored.
            (1, 0, header(99, 0)),
        ];
        let s = size(&header(10, 3), &wal(&frames, 42)).unwrap();
        assert_eq!((s.file, s.used), (14 * 512, 12 * 512));
    }

    #[test]
    fn frames_of_an_older_wal_generation_are_ignored() {
        let mut w = wal(&[(1, 11, header(11, 1))], 1);
        let stale = wal(&[(1, 50, header(50, 0))], 2);
        w.extend_from_slice(&stale[32..]);
        let s = size(&header(10, 3), &w).unwrap();
        assert_eq!((s.file, s.used), (11 * 512, 10 * 512));
    }
}
