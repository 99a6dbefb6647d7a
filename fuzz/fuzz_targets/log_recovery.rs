//! Any bytes as the last log segment (after a valid one): recovery never
//! panics, and a log it accepts can be read to the end and appended to.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use dbrep::log::{Log, LogConfig, RecordType};
use dbrep::testing::SimFs;
use dbrep::vfs::Vfs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    let vfs: Arc<dyn Vfs> = Arc::new(fs.clone());
    let dir = Path::new("/env");
    vfs.create_dir_all(dir).unwrap();
    let cfg = LogConfig {
        segment_size_bytes: 256,
        ..LogConfig::default()
    };
    {
        let (mut log, _) = Log::open(vfs.clone(), dir, cfg.clone(), Default::default(), 0).unwrap();
        for i in 0..8u8 {
            log.append(1, RecordType::Commit, &[i; 40]).unwrap();
        }
        log.force_sync().unwrap();
    }
    // Overwrite the tail of the last segment with the fuzz input.
    let mut names = fs.file_names();
    names.sort();
    let last = names
        .iter()
        .rev()
        .find(|p| p.to_string_lossy().contains("log."))
        .unwrap()
        .clone();
    let file = vfs.open(&last, false).unwrap();
    let len = file.len().unwrap();
    let at = if data.is_empty() {
        len
    } else {
        u64::from(data[0]) % (len + 1)
    };
    file.set_len(at).unwrap();
    file.write_at(data, at).unwrap();
    file.sync().unwrap();
    drop(file);
    if let Ok((mut log, _)) = Log::open(vfs, dir, cfg, Default::default(), 0) {
        for rec in log.iter_from(Default::default()) {
            if rec.is_err() {
                break;
            }
        }
        let _ = log.append(2, RecordType::Commit, b"after recovery");
    }
});
