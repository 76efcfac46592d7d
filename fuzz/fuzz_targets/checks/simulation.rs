//! The seeded simulation (tests/simulation/) driven by a fuzz input instead of
//! a seed: every decision of the run (replicas, steps, faults, edits) is read
//! from the input's bytes, and the run ends when they do. The invariants are
//! the simulation's own; a failed one panics, which fails the input.

#![allow(dead_code)]

#[path = "../../../tests/simulation/check.rs"]
mod check;
#[path = "../../../tests/simulation/choices.rs"]
mod choices;
#[path = "../../../tests/simulation/crash.rs"]
mod crash;
#[path = "../../../tests/simulation/edits.rs"]
mod edits;
#[path = "../../../tests/simulation/server.rs"]
mod server;
#[path = "../../../tests/simulation/world.rs"]
mod world;

/// Steps of one run at most: the input's bytes usually end sooner.
const MAX_STEPS: usize = 40;

pub fn check_simulation(data: &[u8]) {
    // Ids and times from the input too, so one input replays one run.
    let ids = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    tidemark::model::seed_ids_for_this_thread(Some(ids));
    let mut choices = choices::Bytes::new(data);
    let mut w = world::World::new(&mut choices);
    for _ in 0..MAX_STEPS {
        if !choices::Choices::more(&choices) {
            break;
        }
        w.step(&mut choices);
    }
    check::heal(&mut w);
    check::invariants(&w);
    tidemark::model::seed_ids_for_this_thread(None);
}
