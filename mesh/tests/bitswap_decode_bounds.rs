//! Hostile Bitswap messages: a 4 MiB frame of tiny entries, empty blocks or presences decodes
//! into at most the capped number of items, and the decoder's peak allocation stays small
//! (measured with a counting allocator, per thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use relaycast_mesh::bitswap::message::{
    self, MAX_DECODED_BLOCKS, MAX_DECODED_ENTRIES, MAX_DECODED_PRESENCES, MAX_MESSAGE, Message,
};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator; only bookkeeping is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (above the starting point) on this thread while `f` runs.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(|p| p.get()) - start;
    (r, peak.max(0) as usize)
}

/// A message body made of `field` repeated with the given inner bytes until it nears 4 MiB.
fn flood(field: u8, inner: &[u8]) -> Vec<u8> {
    let mut item = vec![(field << 3) | 2];
    message::put_varint(&mut item, inner.len() as u64);
    item.extend_from_slice(inner);
    let n = (MAX_MESSAGE - 16) / item.len();
    let mut out = Vec::with_capacity(n * item.len());
    for _ in 0..n {
        out.extend_from_slice(&item);
    }
    out
}

const BUDGET: usize = 1024 * 1024;

#[test]
fn wantlist_of_tiny_entries_is_capped_while_decoding() {
    // A wantlist whose entries are each one byte-pair: an entry with a 1-byte CID.
    let entries = flood(1, &[0x0a, 0x01, 0x01]);
    let mut body = vec![0x0a];
    message::put_varint(&mut body, entries.len() as u64);
    body.extend_from_slice(&entries);
    assert!(body.len() <= MAX_MESSAGE);
    let (msg, peak) = peak_during(|| Message::decode(&body).expect("decodes"));
    let n = msg.wantlist.as_ref().map_or(0, |w| w.entries.len());
    assert_eq!(n, MAX_DECODED_ENTRIES, "entries past the cap are skipped");
    assert!(peak < BUDGET, "decoding {} KiB of entries allocated {peak} bytes", body.len() / 1024);
    // Empty entries (no CID at all) are just as capped.
    let entries = flood(1, &[]);
    let mut body = vec![0x0a];
    message::put_varint(&mut body, entries.len() as u64);
    body.extend_from_slice(&entries);
    let (msg, peak) = peak_during(|| Message::decode(&body).expect("decodes"));
    assert_eq!(msg.wantlist.map_or(0, |w| w.entries.len()), MAX_DECODED_ENTRIES);
    assert!(peak < BUDGET, "{peak}");
}

#[test]
fn blocks_and_presences_are_capped_while_decoding() {
    for (field, inner) in [(2u8, &[][..]), (3, &[0x12, 0x00][..]), (4, &[0x0a, 0x01, 0x07][..])] {
        let body = flood(field, inner);
        let (msg, peak) = peak_during(|| Message::decode(&body).expect("decodes"));
        let blocks = msg.blocks.len() + msg.payload.len();
        assert!(blocks <= MAX_DECODED_BLOCKS, "field {field}: {blocks} blocks");
        assert!(msg.block_presences.len() <= MAX_DECODED_PRESENCES, "field {field}");
        assert!(blocks + msg.block_presences.len() > 0, "field {field}: something decoded");
        assert!(peak < BUDGET, "field {field}: {peak} bytes");
    }
}

#[test]
fn oversized_cids_are_refused() {
    let mut entry = vec![0x0a];
    message::put_varint(&mut entry, 4096);
    entry.extend_from_slice(&[1u8; 4096]);
    let mut wl = vec![0x0a];
    message::put_varint(&mut wl, entry.len() as u64);
    wl.extend_from_slice(&entry);
    let mut body = vec![0x0a];
    message::put_varint(&mut body, wl.len() as u64);
    body.extend_from_slice(&wl);
    assert!(matches!(Message::decode(&body), Err(message::DecodeError::FieldTooLarge(4096))));
}
