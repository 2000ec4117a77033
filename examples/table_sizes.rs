//! Development tool: pages and bytes per redb table of a PowerPulse
//! database, then its size once compacted. It compacts the file it is given:
//! pass a copy (`cargo run --release --example table_sizes -- copy.redb`).
//! Used to measure storage per input byte.

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableHandle};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let mut db = Database::open(&path).unwrap();
    {
        let txn = db.begin_read().unwrap();
        let mut total = 0;
        for t in txn.list_tables().unwrap() {
            let name = t.name().to_string();
            let untyped = txn.open_untyped_table(t).unwrap();
            let st = untyped.stats().unwrap();
            // Bytes of the pages the table holds: leaves of several pages
            // (large values) count whole.
            let bytes = st.stored_bytes() + st.metadata_bytes() + st.fragmented_bytes();
            total += bytes;
            println!(
                "{name}: entries {} pages {bytes} B: leaf {} branch {} stored {} meta {} frag {}",
                untyped.len().unwrap(),
                st.leaf_pages(),
                st.branch_pages(),
                st.stored_bytes(),
                st.metadata_bytes(),
                st.fragmented_bytes()
            );
        }
        println!("pages total {total} B");
    }
    let before = std::fs::metadata(&path).unwrap().len();
    db.compact().unwrap();
    drop(db);
    println!(
        "file {} -> compacted {}",
        before,
        std::fs::metadata(&path).unwrap().len()
    );
}
