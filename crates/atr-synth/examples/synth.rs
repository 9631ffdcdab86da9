//! Generates synthetic ATR data and prints the summary and the time it took.
//!
//! `cargo run --release -p atr-synth --example synth -- OUT_DIR [MEMBERS] [LISTS] [SEED] [LARGEST_LIST_SHARE]`

use std::path::PathBuf;
use std::time::Instant;

use atr_synth::{SynthConfig, generate};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synth OUT_DIR [MEMBERS] [LISTS] [SEED] [LARGEST_LIST_SHARE]");
        std::process::exit(2);
    };
    let mut config = SynthConfig::default();
    let mut next_number = |default: u64| {
        args.next()
            .map_or(default, |a| a.parse().expect("a number"))
    };
    config.members = next_number(config.members);
    config.lists = next_number(config.lists);
    config.seed = next_number(config.seed);
    if let Some(share) = args.next() {
        config.largest_list_share = share.parse().expect("a fraction");
    }
    let started = Instant::now();
    match generate(&config, &out) {
        Ok(summary) => {
            let secs = started.elapsed().as_secs_f64();
            for (t, n) in &summary.counts {
                println!("{t:>16} {n:>10}");
            }
            println!("largest list: {} entries", summary.largest_list_members);
            println!(
                "{} members in {secs:.2}s, {:.1} MiB in {}",
                config.members,
                summary.bytes as f64 / (1024.0 * 1024.0),
                out.display()
            );
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
