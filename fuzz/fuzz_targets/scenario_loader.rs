//! The scenario loader on arbitrary input: it must answer every input with
//! a scenario or with errors, never a panic, a hang or unbounded memory.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run scenario_loader fuzz/seeds -- -max_total_time=600`
//! (see the README's Robustness section; `.ci/run` runs it for a minute).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file loader's UTF-8 check comes first; the rest sees text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match memeval::scenario::load_str(text, std::path::Path::new("fuzz.json")) {
        Ok(s) => {
            // A valid scenario is fully usable: every step points at what exists.
            for step in &s.steps {
                match *step {
                    memeval::scenario::Step::Message(n) => {
                        let _ = s.message(n);
                    }
                    memeval::scenario::Step::Session(i) => {
                        let _ = &s.sessions[i];
                    }
                    memeval::scenario::Step::Probe { probe, .. } => {
                        let _ = &s.probes[probe];
                    }
                }
            }
        }
        Err(e) => {
            // Every error names the file.
            assert!(e.0.iter().all(|d| d.file.ends_with("fuzz.json")));
        }
    }
});
