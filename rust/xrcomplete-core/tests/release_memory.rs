//! `release_free_memory` gives freed small blocks back to the system. Its own test binary, so
//! that no other test allocates while the resident memory is read.

/// Resident memory of this process, in bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_small_blocks_go_back_to_the_system() {
    const MIB: usize = 1 << 20;
    // 256 MiB in blocks of 1 KB, touched; then all freed but one in 64: the blocks kept are
    // spread over the heap, so that its top cannot shrink and only a trim gives pages back.
    let mut blocks: Vec<Vec<u8>> = (0..256 * 1024).map(|i| vec![i as u8; 1000]).collect();
    let kept: Vec<Vec<u8>> = blocks
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| i % 64 == 63)
        .map(|(_, b)| std::mem::take(b))
        .collect();
    drop(blocks);
    let before = resident();
    xrcomplete_core::hugepages::release_free_memory();
    let after = resident();
    assert!(
        after + 128 * MIB < before,
        "resident {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    // What was kept is intact.
    for (j, b) in kept.iter().enumerate() {
        assert!(b.iter().all(|&v| v == (j * 64 + 63) as u8));
    }
}
