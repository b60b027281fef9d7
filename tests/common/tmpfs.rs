//! A small tmpfs mounted for a test, so that the broker's data directory can really run out
//! of space. Mounting needs root (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test; unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB at a directory named after `name` and this process,
    /// so that tests running side by side get one each.
    pub fn mount(name: &str, size_mib: u32) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("ferromq-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m"))
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
