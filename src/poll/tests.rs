use super::*;

const OWN: &str = r#"
# A speaker's own poll.
question = "Tabs or spaces?"

[[option]]
key = "tabs"
label = "Tabs"

[[option]]
key = "spaces-4"
label = "Four <spaces> & \"more\""
"#;

#[test]
fn the_seed_poll_is_unchanged() {
    let poll = Poll::seed();
    assert_eq!(poll.question(), "What's your go-to debugging strategy?");
    assert_eq!(poll.key_list(), "print, stare, ai, revert, restart");
    for (i, choice) in poll.choices().enumerate() {
        assert_eq!(choice.index(), i);
        assert_eq!(poll.choice(poll.key(choice)), Some(choice));
    }
    assert_eq!(poll.choice("PRINT"), None);
}

#[test]
fn a_poll_file_gives_question_choices_in_file_order() {
    let poll = Poll::parse(OWN).expect("valid");
    assert_eq!(poll.question(), "Tabs or spaces?");
    assert_eq!(poll.len(), 2);
    let spaces = poll.choice("spaces-4").expect("a key of the file");
    assert_eq!(spaces.index(), 1);
    assert_eq!(poll.label(spaces), "Four <spaces> & \"more\"");
    assert_eq!(poll.choice("print"), None, "the seed's keys are gone");
}

/// (file, line named, words in the reason): one row per kind of fault.
#[test]
fn a_bad_file_names_the_line_and_what_is_wrong() {
    let options = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[option]]\nkey = \"k{i}\"\nlabel = \"L{i}\"\n"))
            .collect()
    };
    let two = options(2);
    let table: [(String, Option<usize>, &str); 11] = [
        (
            "question = \"Q\"\n[[option]]\nkey = \"Yes\"\nlabel = \"y\"\n".to_owned() + &two,
            Some(3),
            "key \"Yes\": expected 1–32 characters",
        ),
        (
            format!(
                "question = \"Q\"\n{two}[[option]]\nkey = \"{}\"\nlabel = \"x\"\n",
                "a".repeat(33)
            ),
            Some(9),
            "expected 1–32",
        ),
        (
            format!("question = \"Q\"\n{two}[[option]]\nkey = \"k1\"\nlabel = \"again\"\n"),
            Some(9),
            "key \"k1\" is used twice",
        ),
        (
            format!(
                "question = \"Q\"\n{two}[[option]]\nkey = \"long\"\nlabel = \"{}\"\n",
                "é".repeat(121)
            ),
            Some(10),
            "key \"long\": label expected 1–120",
        ),
        (
            format!("question = \"Q\"\n{two}[[option]]\nkey = \"blank\"\nlabel = \"  \"\n"),
            Some(10),
            "label expected",
        ),
        (
            format!("question = \"Q\"\n{}", options(1)),
            None,
            "expected 2–8 [[option]] tables, found 1",
        ),
        (
            format!("question = \"Q\"\n{}", options(9)),
            Some(26),
            "found 9",
        ),
        (
            format!("question = \"\"\n{two}"),
            Some(1),
            "question: expected 1–200",
        ),
        (two.clone(), Some(1), "missing field `question`"),
        (
            format!("question = \"Q\"\ncolour = \"red\"\n{two}"),
            Some(2),
            "unknown field `colour`",
        ),
        (
            format!("question = \"Q\"\n{two}[[option]]\nkey = \"x\"\nlabel = unquoted\n"),
            Some(10),
            "",
        ),
    ];
    for (text, line, words) in table {
        let err = Poll::parse(&text).expect_err(&text);
        assert_eq!(err.line, line, "{err} in\n{text}");
        assert!(err.to_string().contains(words), "{err} in\n{text}");
    }
    let huge = format!("question = \"Q\"\n{two}#{}", "x".repeat(MAX_POLL_BYTES));
    assert!(
        Poll::parse(&huge)
            .expect_err("too large")
            .to_string()
            .contains("larger than")
    );
}

#[test]
fn counts_serialise_every_choice_in_poll_order() {
    let poll = Poll::seed();
    let mut counts = Counts::default();
    counts.add(poll.choice("ai").expect("seed key"), 3);
    let json = serde_json::to_string(&poll.show(&counts)).expect("serialises");
    assert!(
        json.starts_with(r#"{"print":{"count":0,"label":"Add more print statements"},"stare""#)
    );
    assert!(json.contains(r#""ai":{"count":3,"label":"Ask an AI to explain it"}"#));
    assert!(json.ends_with(r#""restart":{"count":0,"label":"Turn it off and on again"}}"#));
    let own = Poll::parse(OWN).expect("valid");
    let json =
        serde_json::to_string(&own.show(&Counts([1, 2, 0, 0, 0, 0, 0, 0]))).expect("serialises");
    assert_eq!(
        json,
        r#"{"tabs":{"count":1,"label":"Tabs"},"spaces-4":{"count":2,"label":"Four <spaces> & \"more\""}}"#
    );
}

#[test]
fn view_keeps_only_newer_snapshots() {
    let print = Poll::seed().choice("print").expect("seed key");
    let view = CountsView::new();
    let snap = |seq, local, n| Snapshot {
        counts: Counts([n, 0, 0, 0, 0, 0, 0, 0]),
        seq,
        local,
    };
    assert!(view.offer(snap(5, 0, 5)));
    assert!(!view.offer(snap(4, 0, 4)), "older remote snapshot ignored");
    assert!(view.offer(snap(5, 1, 6)), "local offline change accepted");
    assert!(view.offer(snap(6, 0, 7)));
    assert_eq!(view.current().counts.get(print), 7);
    assert!(view.offer(snap(8, 0, 0)), "a rebuild wins by its sequence");
    assert_eq!(view.current().counts.total(), 0);
}
