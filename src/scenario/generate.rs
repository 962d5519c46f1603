//! `memeval generate`: long, readable synthetic scenarios. Chit-chat over
//! several topics, facts planted at spread-out depths, knowledge updates
//! later in the conversation, recurring probes for every fact, an inline
//! probe for each superseded value just before its update, and an
//! abstention probe. Seeded: the same options give the same file.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::clock::{day_number, format_rfc3339};

/// Options of a generated scenario.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub name: String,
    pub messages: u32,
    pub facts: u32,
    pub sessions: u32,
    /// Recurring probes are asked every this many messages.
    pub every: u32,
    pub seed: u64,
    /// About a third of the exchanges call tools (format 1.1): an order
    /// lookup, a flight search, a forecast for two cities at once; one
    /// lookup's result plants a fact.
    pub tools: bool,
}

struct FactTemplate {
    id: &'static str,
    plant: &'static str,
    values: &'static [&'static str],
    question: &'static str,
    kind: &'static str,
    /// A later message that replaces the value, if the fact can change.
    update: Option<&'static str>,
}

const FACTS: &[FactTemplate] = &[
    FactTemplate {
        id: "name",
        plant: "By the way, my name is {v}.",
        values: &[
            "Priya Raman",
            "Tomasz Nowak",
            "Amara Okafor",
            "Lucia Ferreira",
            "Kenji Watanabe",
        ],
        question: "What is my name?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "dog",
        plant: "My dog is called {v} and she hates the vacuum cleaner.",
        values: &["Biscuit", "Pickle", "Mochi", "Waffles", "Juniper"],
        question: "What is my dog called?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "city",
        plant: "I live in {v}, close to the old harbour.",
        values: &["Lisbon", "Gdansk", "Valparaiso", "Hobart", "Trieste"],
        question: "Which city do I live in?",
        kind: "update",
        update: Some("Big news: we finally moved, I live in {v} now."),
    },
    FactTemplate {
        id: "employer",
        plant: "I work at {v} on the payments team.",
        values: &[
            "Fernwood Analytics",
            "Quillstone Bank",
            "Harbor Freight Labs",
            "Oakridge Health",
        ],
        question: "Where do I work?",
        kind: "update",
        update: Some("I switched jobs last week; I now work at {v}."),
    },
    FactTemplate {
        id: "deadline",
        plant: "Our launch deadline is {v}, and it cannot move.",
        values: &["March 14", "April 22", "June 3", "September 9"],
        question: "When is our launch deadline?",
        kind: "temporal",
        update: Some("The launch deadline changed: it is now {v}."),
    },
    FactTemplate {
        id: "allergy",
        plant: "Please remember that I am allergic to {v}.",
        values: &["peanuts", "shellfish", "sesame", "penicillin"],
        question: "What am I allergic to?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "codename",
        plant: "The project codename is {v}, keep it quiet.",
        values: &["Bluejay", "Kestrel", "Tamarind", "Obsidian"],
        question: "What is the project codename?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "language",
        plant: "Our backend is written in {v}.",
        values: &["Elixir", "Kotlin", "OCaml", "Haskell"],
        question: "Which language is our backend written in?",
        kind: "update",
        update: Some("We rewrote the backend; it is written in {v} now."),
    },
    FactTemplate {
        id: "sister",
        plant: "My sister {v} is visiting next month.",
        values: &["Ingrid", "Rosalind", "Beatriz", "Yasmin"],
        question: "What is my sister's name?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "car",
        plant: "I drive an old {v} that rattles on the motorway.",
        values: &["Saab 900", "Volvo 240", "Citroen DS", "Lada Niva"],
        question: "What car do I drive?",
        kind: "single-hop",
        update: None,
    },
    FactTemplate {
        id: "birthday",
        plant: "My birthday is on {v}.",
        values: &["November 2", "February 17", "July 29", "May 11"],
        question: "When is my birthday?",
        kind: "temporal",
        update: None,
    },
    FactTemplate {
        id: "budget",
        plant: "The cloud budget for the quarter is {v} dollars.",
        values: &["48,000", "12,500", "95,000", "7,200"],
        question: "What is the cloud budget for the quarter?",
        kind: "single-hop",
        update: Some("Finance cut the cloud budget to {v} dollars."),
    },
];

/// Chit-chat: (user templates, assistant templates, slot words).
const TOPICS: &[(&[&str], &[&str], &[&str])] = &[
    (
        &[
            "I tried baking {w} bread this weekend but the crust came out too hard.",
            "Do you have tips for a quick weeknight dinner with {w}?",
            "I keep overcooking {w}; what temperature should I use?",
            "We are hosting friends on Saturday and I want to cook something with {w}.",
        ],
        &[
            "For {w}, a slightly lower oven temperature and a longer rest usually help.",
            "Keep it simple: roast the {w} with olive oil, salt and a squeeze of lemon.",
            "A thermometer takes the guesswork out of cooking {w}; aim for the lower end of the range.",
        ],
        &[
            "sourdough",
            "salmon",
            "chickpeas",
            "mushrooms",
            "aubergine",
            "rye",
            "lentils",
        ],
    ),
    (
        &[
            "Our dashboard query on the {w} table takes forty seconds; any ideas?",
            "Should we partition the {w} table by day or by customer?",
            "The nightly job that loads {w} failed again with a timeout.",
            "I am refactoring the {w} model and the tests keep flaking.",
        ],
        &[
            "Check the query plan for the {w} table first; a missing filter on the partition column is the usual culprit.",
            "Partition {w} by the column most queries filter on, and cluster by the next one.",
            "For the {w} load, add retries with backoff and make the step idempotent so a rerun is safe.",
        ],
        &[
            "orders",
            "events",
            "invoices",
            "sessions",
            "shipments",
            "ledger",
            "inventory",
        ],
    ),
    (
        &[
            "I started running again, about {w} kilometres three times a week.",
            "My knees ache after long runs; should I switch to {w}?",
            "I signed up for a {w} class at the community centre.",
        ],
        &[
            "Build up slowly; adding about ten percent a week keeps injuries away, {w} included.",
            "{w} is a good low-impact option; alternate it with easy runs.",
            "Consistency beats intensity; a steady routine with {w} will pay off.",
        ],
        &[
            "five", "eight", "cycling", "swimming", "yoga", "rowing", "pilates",
        ],
    ),
    (
        &[
            "We are planning a trip and cannot decide between the coast and {w}.",
            "Is it worth taking the night train to {w}?",
            "I lost my luggage on the way back from {w} last year.",
        ],
        &[
            "If you like slow mornings, {w} in the shoulder season is hard to beat.",
            "The night train to {w} saves a hotel night and arrives rested, if you book a berth.",
            "Keep a change of clothes in your hand luggage, especially on routes like {w}.",
        ],
        &[
            "the mountains",
            "Vienna",
            "the lakes",
            "Seville",
            "Krakow",
            "the islands",
        ],
    ),
    (
        &[
            "I have been listening to a lot of {w} lately while I work.",
            "Can you recommend something similar to {w} for focus?",
            "I am learning to play {w} on the guitar but the chords are hard.",
        ],
        &[
            "{w} works well for focus because it has few lyrics to distract you.",
            "Try instrumental albums in the spirit of {w}; long tracks help you settle in.",
            "Slow the tempo right down when practising {w}; speed comes with clean chord changes.",
        ],
        &[
            "jazz",
            "ambient",
            "bossa nova",
            "film scores",
            "folk",
            "minimalism",
        ],
    ),
    (
        &[
            "My tomato plants have yellow leaves near the {w}.",
            "When should I plant {w} in a small balcony garden?",
            "Slugs ate half of my {w} again.",
        ],
        &[
            "Yellowing near the {w} often means too much water; let the soil dry between waterings.",
            "Plant {w} after the last frost, in a pot at least thirty centimetres deep.",
            "Copper tape around the pots and an evening check keep slugs off the {w}.",
        ],
        &[
            "bottom",
            "basil",
            "lettuce",
            "strawberries",
            "beans",
            "stems",
        ],
    ),
];

const ACKS: &[&str] = &[
    "Thanks for telling me, I will keep that in mind.",
    "Noted, that is useful context.",
    "Got it, I will remember that.",
];

/// Orders, destinations and dates of the generated tool calls.
const ORDERS: &[&str] = &["A-1042", "B-2317", "C-0588", "D-7731", "E-4406", "F-9150"];
const DESTINATIONS: &[&str] = &["Oslo", "Porto", "Tallinn", "Bologna", "Ghent", "Split"];
const DATES: &[&str] = &[
    "3 February",
    "17 March",
    "9 April",
    "28 May",
    "12 June",
    "30 July",
];
const FORECASTS: &[&str] = &[
    "light rain",
    "sunny spells",
    "overcast",
    "snow showers",
    "clear skies",
];

/// One tool exchange: the user's request, the assistant's calls, one
/// result per call, the assistant's answer. `number` makes the call ids
/// unique; `planted` is the order whose arrival date is a fact, if this
/// exchange plants it.
fn tool_exchange(
    rng: &mut ChaCha8Rng,
    number: u32,
    planted: Option<(&str, &str)>,
    dates: &[&str],
) -> Vec<Value> {
    let call = |id: String, name: &str, args: Value| json!({"id": id, "name": name, "arguments": args.to_string()});
    let result = |id: String, content: Value| json!({"role": "tool", "tool_call_id": id, "content": content.to_string()});
    let id = |k: u32| format!("call_{number}_{k}");
    let kind = if planted.is_some() {
        0
    } else {
        rng.random_range(0..3)
    };
    let (user, calls, results, answer) = match kind {
        0 => {
            let (order, date) = match planted {
                Some(p) => p,
                None => (pick(rng, ORDERS), pick(rng, dates)),
            };
            let mut r = result(
                id(1),
                json!({"order": order, "status": "shipped", "eta": date}),
            );
            if planted.is_some() {
                r["plants"] = json!(["order-eta"]);
            }
            (
                format!("Can you check where my order {order} is?"),
                vec![call(id(1), "lookup_order", json!({"order": order}))],
                vec![r],
                format!("Order {order} has shipped and should arrive on {date}."),
            )
        }
        1 => {
            let (to, date) = (pick(rng, DESTINATIONS), pick(rng, dates));
            let flight = format!("MV{}", rng.random_range(100..1000));
            (
                format!("Find me a morning flight to {to} on {date}."),
                vec![call(
                    id(1),
                    "search_flights",
                    json!({"to": to, "date": date, "time": "morning"}),
                )],
                vec![result(
                    id(1),
                    json!({"flights": [{"number": flight, "departs": "08:40", "seats": 4}]}),
                )],
                format!(
                    "The best morning option to {to} is {flight}, leaving at 08:40 with 4 seats left."
                ),
            )
        }
        _ => {
            let a = rng.random_range(0..DESTINATIONS.len());
            let b = (a + 1 + rng.random_range(0..DESTINATIONS.len() - 1)) % DESTINATIONS.len();
            let (x, y) = (DESTINATIONS[a], DESTINATIONS[b]);
            let (fx, fy) = (pick(rng, FORECASTS), pick(rng, FORECASTS));
            (
                format!("What is the weather tomorrow in {x} and in {y}?"),
                vec![
                    call(id(1), "get_forecast", json!({"city": x})),
                    call(id(2), "get_forecast", json!({"city": y})),
                ],
                vec![
                    result(id(1), json!({"city": x, "forecast": fx})),
                    result(id(2), json!({"city": y, "forecast": fy})),
                ],
                format!("Tomorrow {x} has {fx} and {y} has {fy}."),
            )
        }
    };
    let mut out = vec![
        json!({"role": "user", "content": user}),
        json!({"role": "assistant", "tool_calls": calls}),
    ];
    out.extend(results);
    out.push(json!({"role": "assistant", "content": answer}));
    out
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn chit_chat(rng: &mut ChaCha8Rng, topic: usize) -> (String, String) {
    let (users, assistants, words) = TOPICS[topic];
    let w = pick(rng, words);
    let user = pick(rng, users).replace("{w}", w);
    let mut assistant = pick(rng, assistants).replace("{w}", w);
    if let Some(c) = assistant.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    (user, assistant)
}

/// Builds the scenario, loaded as a file of it would be (for benches and
/// tests that replay generated conversations without writing them).
pub fn scenario(o: &GenerateOptions) -> Result<super::Scenario, String> {
    let value = generate(o)?;
    super::load_str(
        &value.to_string(),
        std::path::Path::new(&format!("{}.json", o.name)),
    )
    .map_err(|e| format!("a generated scenario is invalid: {e}"))
}

/// Refuses options that cannot make a scenario.
fn check(o: &GenerateOptions) -> Result<(), String> {
    if o.messages < 20 {
        return Err("--messages must be at least 20".into());
    }
    if o.facts == 0 || o.facts as usize > FACTS.len() {
        return Err(format!("--facts must be between 1 and {}", FACTS.len()));
    }
    if o.sessions == 0 || o.sessions > o.messages / 10 {
        return Err("--sessions must be at least 1 and leave 10 messages per session".into());
    }
    if o.every == 0 {
        return Err("--every must be at least 1".into());
    }
    Ok(())
}

/// Which exchange plants what (a fact, or its update), and which facts are
/// updated (with the exchange). Facts spread over the first 70% of the
/// conversation, updates over 75-95%, each slot used once.
#[allow(clippy::type_complexity)]
fn plan_plants(
    rng: &mut ChaCha8Rng,
    exchanges: u32,
    templates: &[&FactTemplate],
) -> (Vec<Option<(usize, bool)>>, Vec<(usize, usize)>) {
    let mut plan: Vec<Option<(usize, bool)>> = vec![None; exchanges as usize];
    let mut place = |rng: &mut ChaCha8Rng, lo: f64, hi: f64, what: (usize, bool)| {
        let (lo, hi) = (
            (lo * f64::from(exchanges)) as usize,
            ((hi * f64::from(exchanges)) as usize).max(1),
        );
        let mut at = rng.random_range(lo..hi.max(lo + 1)).min(plan.len() - 1);
        while plan[at].is_some() {
            at = (at + 1) % plan.len();
        }
        plan[at] = Some(what);
        at
    };
    let n = templates.len() as f64;
    let mut plants = Vec::new();
    for (i, _) in templates.iter().enumerate() {
        let slot = 0.7 / n;
        let at = place(rng, i as f64 * slot, (i as f64 + 1.0) * slot, (i, false));
        plants.push(at);
    }
    let mut updated = Vec::new();
    for (i, t) in templates.iter().enumerate() {
        if t.update.is_some() && i % 2 == 0 {
            let at = place(rng, 0.75, 0.95, (i, true));
            updated.push((i, at));
        }
    }
    (plan, updated)
}

/// The facts: each template's value, and where it is updated, the old one
/// superseded by the new.
fn facts_of(
    templates: &[&FactTemplate],
    values: &[(&str, &str)],
    updated: &[(usize, usize)],
) -> Vec<Value> {
    let mut facts = Vec::new();
    for (i, t) in templates.iter().enumerate() {
        let (old, new) = values[i];
        let is_updated = updated.iter().any(|&(u, _)| u == i);
        let base_id = if is_updated {
            format!("{}-old", t.id)
        } else {
            t.id.to_string()
        };
        let statement = t.plant.replace("{v}", old);
        facts.push(json!({"id": base_id, "statement": statement, "expect": [old]}));
        if is_updated {
            let statement = t.update.expect("updatable").replace("{v}", new);
            facts.push(
                json!({"id": t.id, "statement": statement, "expect": [new], "supersedes": base_id}),
            );
        }
    }
    facts
}

/// A recurring probe per fact, asked every `every` messages.
fn recurring_probes(
    templates: &[&FactTemplate],
    values: &[(&str, &str)],
    updated: &[(usize, usize)],
    every: u32,
) -> Vec<Value> {
    templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (old, new) = values[i];
            let is_updated = updated.iter().any(|&(u, _)| u == i);
            let (fid, value) = if is_updated {
                (t.id.to_string(), new)
            } else {
                (t.id.to_string(), old)
            };
            json!({
                "id": format!("ask-{}", t.id),
                "probe": t.question,
                "expects": [fid],
                "answer": value,
                "kind": t.kind,
                "every": every,
            })
        })
        .collect()
}

/// Builds the scenario as JSON, ready to write.
pub fn generate(o: &GenerateOptions) -> Result<Value, String> {
    check(o)?;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let exchanges = o.messages / 2;
    let templates: Vec<&FactTemplate> = FACTS.iter().take(o.facts as usize).collect();

    let (plan, updated) = plan_plants(&mut rng, exchanges, &templates);

    let values: Vec<(&str, &str)> = templates
        .iter()
        .map(|t| {
            let a = rng.random_range(0..t.values.len());
            let b = (a + 1 + rng.random_range(0..t.values.len() - 1)) % t.values.len();
            (t.values[a], t.values[b])
        })
        .collect();

    let facts = facts_of(&templates, &values, &updated);

    // Sessions start two or three days apart; messages are a minute apart.
    let start_day = day_number(2025, 1, 6).expect("a date");
    let per_session = exchanges.div_ceil(o.sessions);
    let mut sessions: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    let mut day = start_day;
    let mut minute = 0i64;
    let mut topic = rng.random_range(0..TOPICS.len());
    // With tools: the order whose arrival a lookup plants, about a
    // quarter of the way in.
    let tool_fact = o
        .tools
        .then(|| (pick(&mut rng, ORDERS), pick(&mut rng, DATES), exchanges / 4));
    // Other lookups and searches never name the planted date.
    let dates: Vec<&str> = DATES
        .iter()
        .copied()
        .filter(|d| tool_fact.is_none_or(|f| f.1 != *d))
        .collect();
    let (mut tool_calls, mut fact_planted, mut written) = (0, false, 0u32);
    let mut x = 0;
    while x < exchanges {
        if x % per_session == 0 {
            if !turns.is_empty() {
                let id = format!("s{}", sessions.len() + 1);
                let start = format_rfc3339(day * 86_400_000 + 9 * 3_600_000);
                sessions
                    .push(json!({"id": id, "start": start, "turns": std::mem::take(&mut turns)}));
                // The next sitting starts two or three days after this one ends.
                day += minute / 1440 + 2 + rng.random_range(0..2i64);
            }
            minute = 0;
        }
        if rng.random_range(0..6) == 0 {
            topic = rng.random_range(0..TOPICS.len());
        }
        let at = |m: i64| format_rfc3339(day * 86_400_000 + 9 * 3_600_000 + m * 60_000);
        // A tool exchange takes two exchanges' place, within one session,
        // where nothing is planted and no probe is due.
        let free = |x: u32| (x as usize) < plan.len() && plan[x as usize].is_none();
        let planted = tool_fact.filter(|f| x >= f.2 && !fact_planted);
        if o.tools
            && (planted.is_some() || rng.random_range(0..3) == 0)
            && free(x)
            && free(x + 1)
            && (x + 1) % per_session != 0
            && x + 1 != exchanges * 9 / 10
        {
            tool_calls += 1;
            fact_planted |= planted.is_some();
            let exchange = tool_exchange(&mut rng, x, planted.map(|p| (p.0, p.1)), &dates);
            written += exchange.len() as u32;
            for mut m in exchange {
                m["at"] = json!(at(minute));
                turns.push(m);
                minute += 1;
            }
            x += 2;
            continue;
        }
        let (mut user, mut assistant) = chit_chat(&mut rng, topic);
        let mut user_plants: Vec<String> = Vec::new();
        if let Some((f, is_update)) = plan[x as usize] {
            let t = templates[f];
            let (old, new) = values[f];
            if is_update {
                // Ask about the old value just before it changes.
                turns.push(json!({
                    "probe": t.question,
                    "id": format!("{}-before-update", t.id),
                    "expects": [format!("{}-old", t.id)],
                    "kind": t.kind,
                }));
                user = format!(
                    "{} {}",
                    t.update.expect("updatable").replace("{v}", new),
                    user
                );
                user_plants.push(t.id.to_string());
            } else {
                user = format!("{} {}", t.plant.replace("{v}", old), user);
                let updated_later = updated.iter().any(|&(u, _)| u == f);
                user_plants.push(if updated_later {
                    format!("{}-old", t.id)
                } else {
                    t.id.to_string()
                });
            }
            assistant = format!("{} {}", pick(&mut rng, ACKS), assistant);
        }
        let mut u = json!({"role": "user", "content": user, "at": at(minute)});
        if !user_plants.is_empty() {
            u["plants"] = json!(user_plants);
        }
        turns.push(u);
        turns.push(json!({"role": "assistant", "content": assistant, "at": at(minute + 1)}));
        minute += 2;
        written += 2;
        x += 1;
        if x == exchanges * 9 / 10 {
            turns.push(json!({
                "probe": "What is my favourite film?",
                "id": "abstain-film",
                "expects": [],
                "kind": "abstention",
                "answer": "You have not told me your favourite film.",
            }));
        }
    }
    let id = format!("s{}", sessions.len() + 1);
    let start = format_rfc3339(day * 86_400_000 + 9 * 3_600_000);
    sessions.push(json!({"id": id, "start": start, "turns": turns}));

    let mut facts = facts;
    let mut probes = recurring_probes(&templates, &values, &updated, o.every);
    if let Some((order, date, _)) = tool_fact {
        facts.push(json!({
            "id": "order-eta",
            "statement": format!("Order {order} arrives on {date} (from the order lookup)."),
            "expect": [date],
        }));
        probes.push(json!({
            "id": "ask-order-eta",
            "probe": format!("When is my order {order} due to arrive?"),
            "expects": ["order-eta"],
            "answer": date,
            "kind": "tool-result",
            "every": o.every,
        }));
    }

    Ok(json!({
        "format": if o.tools { json!(1.1) } else { json!(1) },
        "name": o.name,
        "description": format!(
            "Generated: {} messages over {} sessions, {} facts planted at spread-out depths, {} knowledge updates{} (seed {}).",
            written, sessions.len(), templates.len(), updated.len(),
            if o.tools { format!(", {tool_calls} tool-calling exchanges (one plants a fact)") } else { String::new() },
            o.seed
        ),
        "system_prompt": "You are a friendly, practical assistant who remembers what the user tells you.",
        "facts": facts,
        "sessions": sessions,
        "probes": probes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Role, load_str};

    fn opts(messages: u32, facts: u32, seed: u64) -> GenerateOptions {
        GenerateOptions {
            name: "gen".into(),
            messages,
            facts,
            sessions: 3,
            every: 25,
            seed,
            tools: false,
        }
    }

    #[test]
    fn generated_scenarios_are_valid_and_seeded() {
        for (m, f, seed) in [(40, 3, 1), (200, 8, 2), (1000, 12, 3), (9000, 12, 4)] {
            let v = generate(&opts(m, f, seed)).unwrap();
            let text = serde_json::to_string_pretty(&v).unwrap();
            let s =
                load_str(&text, std::path::Path::new("gen.json")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.messages.len() as u32, m);
            assert_eq!(
                s.probes.iter().filter(|p| p.every.is_some()).count() as u32,
                f
            );
            assert_eq!(s.sessions.len(), 3);
            assert_eq!(v, generate(&opts(m, f, seed)).unwrap());
        }
        assert_ne!(
            generate(&opts(200, 8, 1)).unwrap(),
            generate(&opts(200, 8, 2)).unwrap()
        );
    }

    #[test]
    fn generated_tool_scenarios_pair_calls_and_plant_from_a_result() {
        for (m, seed) in [(40, 1), (1200, 7)] {
            let o = GenerateOptions {
                tools: true,
                ..opts(m, 4, seed)
            };
            let v = generate(&o).unwrap();
            assert_eq!(v, generate(&o).unwrap());
            let s = load_str(&v.to_string(), std::path::Path::new("gen.json"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(s.messages.len() as u32 >= m);
            let tools = s.messages.iter().filter(|m| m.role == Role::Tool).count();
            assert!(tools * 10 >= s.messages.len() / 2, "{tools} tool results");
            let eta = s.facts.iter().find(|f| f.id == "order-eta").unwrap();
            assert_eq!(s.message(eta.planted_by[0]).role, Role::Tool);
        }
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(generate(&opts(10, 3, 1)).is_err());
        assert!(generate(&opts(100, 99, 1)).is_err());
    }
}
