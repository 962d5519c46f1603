use super::*;

#[test]
fn the_default_template_is_the_tutorials_prompt() {
    let tok = Tokenizer::by_encoding("o200k_base").unwrap();
    let msgs = [
        Covered::new(Role::User, "I'm Ana.", &tok),
        Covered::new(Role::Assistant, "Hello Ana!", &tok),
    ];
    let want = "Prior summary:\nAna uses dbt.\n\nPlease summarize the following conversation segment.\n\
                Capture: the user's identity/role (if mentioned), their primary goals,\n\
                key facts they've shared, decisions made, and any open questions.\n\
                Be dense and specific \u{2014} this summary replaces the raw messages.\n\n\
                Conversation:\nUSER: I'm Ana.\nASSISTANT: Hello Ana!\n\nSummary:";
    let t = SummaryTemplate::default();
    assert_eq!(t.render(Some("Ana uses dbt."), &msgs), want);
    assert!(t.render(None, &msgs).starts_with("Please summarize"));
}

#[test]
fn a_template_places_each_part_once() {
    let t = SummaryTemplate::parse("[{summary}] {conversation} {unknown}").unwrap();
    // A placeholder inside a message is left as written.
    let tok = Tokenizer::by_encoding("o200k_base").unwrap();
    let msgs = [Covered::new(Role::User, "say {summary} please", &tok)];
    assert_eq!(
        t.render(Some("S"), &msgs),
        "[S] USER: say {summary} please {unknown}"
    );
    assert!(SummaryTemplate::parse("no conversation").is_err());
}

#[test]
fn the_prompt_is_counted_exactly_without_tokenizing_it_whole() {
    let s = crate::scenario::generate::scenario(&crate::scenario::generate::GenerateOptions {
        name: "count".into(),
        messages: 300,
        facts: 8,
        sessions: 2,
        every: 50,
        seed: 7,
        tools: false,
    })
    .unwrap();
    let mut texts: Vec<&str> = s
        .messages
        .iter()
        .filter_map(|m| m.content.as_deref())
        .collect();
    // Every shape of edge a content can have.
    texts.extend([
        "",
        " ",
        "a",
        "word",
        "ends with a space ",
        "ends with a newline\n",
        " leading space",
        "\nleading newline",
        "two  spaces  inside",
        "tab\tinside and at the end\t",
        "A question?",
        "Ellipsis...",
        "numbers 123 4567 89",
        "12345",
        "emoji \u{1f389} party \u{1f389}",
        "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8}",
        "mixed \u{65e5}\u{672c} \u{8a9e} text",
        "line one.\nline two.",
        "trailing dot. ",
        "CAPS LOCK TEXT",
        "x  ",
        "- list item\n- another",
        "quote \"here\"",
        "it's 'quoted'",
        "multiple\n\nnewlines here",
        "ends with a colon:",
        "a b",
        "url https://x.y/z?q=1 end",
        "  ",
        "\u{a0}non-breaking\u{a0}space end",
        "ends with nbsp\u{a0}",
        "'s 're 've",
        "punctuation !!! ??? ... end!!!",
        "\r\nwindows\r\nlines\r\n",
    ]);
    let prior = "- user: Ana uses dbt.\n- assistant: Noted, Ana.";
    let odd = SummaryTemplate::parse("Summarize: {conversation} -- {summary}").unwrap();
    let spaced = SummaryTemplate::parse("Conversation: \n{conversation}\n").unwrap();
    for enc in crate::tokens::ENCODINGS {
        let tok = Tokenizer::by_encoding(enc).unwrap();
        for size in [1, 2, 7] {
            for (i, chunk) in texts.chunks(size).enumerate() {
                let covered: Vec<Covered<'_>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        let role = if (i + j) % 2 == 0 {
                            Role::User
                        } else {
                            Role::Assistant
                        };
                        Covered::new(role, c, &tok)
                    })
                    .collect();
                let prior = (i % 2 == 1).then_some(prior);
                for t in [&SummaryTemplate::default(), &odd, &spaced] {
                    assert_eq!(
                        t.count(prior.map(|p| (p, tok.count(p))), &covered, &tok),
                        tok.count(&t.render(prior, &covered)),
                        "{enc}, template {:?}: {chunk:?}",
                        t.0
                    );
                }
            }
        }
    }
}
