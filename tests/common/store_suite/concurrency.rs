//! Concurrent appends, and random appends against a model.

use super::*;

/// Four writers push batches (each with a few re-pushed ops) into one space while a
/// reader pulls: the new ops get exactly 1..=N, each batch's new ops a contiguous run,
/// and the reader never sees a gap (it would skip an op forever).
pub fn concurrent_appends_get_exactly_one_to_n<S: ServerStore>(store: &S) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 10;
    const BATCH: usize = 50;
    const REPUSHED: usize = 5;
    const N: u64 = (WRITERS * BATCHES * BATCH) as u64;
    schemaless_space(store, "crm");
    let writing = AtomicBool::new(true);

    let (assigned, pulled) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut pulled: Vec<(Seq, OpId)> = Vec::new();
            loop {
                let done = !writing.load(Ordering::SeqCst);
                let since = pulled.last().map_or(Seq::ZERO, |(seq, _)| *seq);
                let page = store.read_ops("crm", since, PageLimit::count(97)).unwrap();
                for (i, (seq, op)) in page.iter().enumerate() {
                    assert_eq!(*seq, since + 1 + i as u64, "a reader saw a gap after seq {since}");
                    pulled.push((*seq, op.op.id));
                }
                if page.is_empty() {
                    if done {
                        return pulled;
                    }
                    std::thread::yield_now();
                }
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                scope.spawn(move || {
                    let mut assigned: Vec<(OpId, Seq)> = Vec::new();
                    let mut previous: Vec<StoredOp> = Vec::new();
                    for _ in 0..BATCHES {
                        let fresh: Vec<StoredOp> = (0..BATCH)
                            .map(|i| stored(&op(&format!("w{w}-{i}"), &[w as u8, i as u8]), &format!("user{w}")))
                            .collect();
                        let repushed: Vec<StoredOp> = previous.iter().take(REPUSHED).cloned().collect();
                        let batch = [repushed.clone(), fresh.clone()].concat();
                        let seqs = append_ok(store, "crm", &batch);
                        assert_eq!(seqs.len(), batch.len());
                        for (old, seq) in repushed.iter().zip(&seqs) {
                            let first = assigned.iter().find(|(id, _)| *id == old.op.id).unwrap().1;
                            assert_eq!(*seq, first, "a re-pushed op keeps its first seq");
                        }
                        let new_seqs = &seqs[REPUSHED.min(repushed.len())..];
                        for pair in new_seqs.windows(2) {
                            assert_eq!(pair[1], pair[0] + 1, "one batch's new ops get a contiguous run");
                        }
                        assigned.extend(fresh.iter().map(|s| s.op.id).zip(new_seqs.iter().copied()));
                        previous = fresh;
                    }
                    assigned
                })
            })
            .collect();
        // Stop the reader before judging the writers, so a failed writer cannot hang the suite.
        let results: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        writing.store(false, Ordering::SeqCst);
        let pulled = reader.join().unwrap();
        let assigned: Vec<(OpId, Seq)> = results.into_iter().flat_map(|r| r.unwrap()).collect();
        (assigned, pulled)
    });

    let mut seqs: Vec<Seq> = assigned.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "exactly 1..=N, no gap, no duplicate");
    assert_eq!(store.head("crm").unwrap(), N);

    let by_id: BTreeMap<OpId, Seq> = assigned.into_iter().collect();
    assert_eq!(by_id.len() as u64, N, "every op id once");
    assert_eq!(pulled.len() as u64, N, "the reader met every op once");
    for (seq, id) in &pulled {
        assert_eq!(
            by_id[id], *seq,
            "the reader sees each op at the seq its writer was given"
        );
    }
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), (1..=N).collect::<Vec<_>>());
    let ids: HashSet<OpId> = all.iter().map(|(_, s)| s.op.id).collect();
    assert_eq!(ids.len() as u64, N);
}

/// Random batches (new ops, re-pushes, duplicates inside a batch, conflicting
/// content) into two spaces, compared after every step with a plain model.
pub fn random_appends_match_a_model<S: ServerStore>(store: &S) {
    #[derive(Default)]
    struct Model {
        log: Vec<StoredOp>,
        seq_of: BTreeMap<OpId, Seq>,
    }
    impl Model {
        /// What `append` must answer: per op, its seq or the id it conflicts with.
        fn append(&mut self, batch: &[StoredOp]) -> Vec<Result<Seq, String>> {
            let mut results = Vec::new();
            for s in batch {
                results.push(match self.seq_of.get(&s.op.id) {
                    Some(&seq) if self.log[seq.0 as usize - 1].op == s.op => Ok(seq),
                    Some(_) => Err(s.op.id.to_string()),
                    None => {
                        self.log.push(s.clone());
                        self.seq_of.insert(s.op.id, Seq(self.log.len() as u64));
                        Ok(Seq(self.log.len() as u64))
                    }
                });
            }
            results
        }
    }

    let mut rng = StdRng::seed_from_u64(0x71de_3a4c);
    let spaces = ["a", "b"];
    let mut models = [Model::default(), Model::default()];
    for space in spaces {
        schemaless_space(store, space);
    }
    for step in 0..150 {
        let which = rng.random_range(0..2);
        let (space, model) = (spaces[which], &mut models[which]);
        let mut batch: Vec<StoredOp> = Vec::new();
        for _ in 0..rng.random_range(1..8) {
            let roll = rng.random_range(0..100);
            let next = if roll < 55 || model.log.is_empty() {
                stored(
                    &op(&format!("r{}", rng.random_range(0..20)), &[step as u8, roll as u8]),
                    "ada",
                )
            } else if roll < 80 {
                let known = &model.log[rng.random_range(0..model.log.len())];
                stored(&known.op, if rng.random_bool(0.5) { "ada" } else { "bob" })
            } else if roll < 95 && !batch.is_empty() {
                batch[rng.random_range(0..batch.len())].clone()
            } else {
                altered(&model.log[rng.random_range(0..model.log.len())])
            };
            batch.push(next);
        }
        let expected = model.append(&batch);
        let actual: Vec<Result<Seq, String>> = append(store, space, &batch)
            .unwrap()
            .into_iter()
            .map(|r| {
                r.map_err(|e| match e {
                    OpRefusal::OpIdConflict { id } => id,
                    other => panic!("step {step}: refused for another reason: {other}"),
                })
            })
            .collect();
        assert_eq!(actual, expected, "step {step}");
        assert_eq!(store.head(space).unwrap(), Seq(model.log.len() as u64), "step {step}");
        if step % 10 == 0 {
            let since = rng.random_range(0..=model.log.len());
            let limit = rng.random_range(1..10);
            let page = store
                .read_ops(space, Seq(since as u64), PageLimit::count(limit))
                .unwrap();
            let want: Vec<(Seq, StoredOp)> = model
                .log
                .iter()
                .enumerate()
                .skip(since)
                .take(limit)
                .map(|(i, s)| (Seq(i as u64) + 1, s.clone()))
                .collect();
            assert_eq!(page, want, "step {step}");
        }
    }
    for (space, model) in spaces.iter().zip(&models) {
        let all: Vec<StoredOp> = everything(store, space).into_iter().map(|(_, s)| s).collect();
        assert_eq!(all, model.log);
    }
}
