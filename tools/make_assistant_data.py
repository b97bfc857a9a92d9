#!/usr/bin/env python3
"""Writes examples/assistant/ (the Velora support assistant's chat data) from examples/faq and the
conversations written by hand below. Standard library only; developers run it, the demo and CI use
the committed output.

  train.jsonl        chat conversations the models are tuned on
  test.jsonl         held-out conversations: questions worded differently (FAQ test split), new
                     combinations of two facts, new out-of-scope questions, new follow-ups
  val.jsonl          validation conversations for choosing training settings (never the test set):
                     one more FAQ training-split question per intent that training does not use, with its
                     canonical answer, and out-of-scope questions of their own
  faq_entries.jsonl  the 28 canonical answers as {"text", "label"}: the RAG documents
  intents.jsonl      the same plus the canonical refusal (label out_of_scope): the index that scores
                     which intent an answer is nearest to (ftc retrieve)

Every conversation carries "intent": the FAQ intent its last answer belongs to, "out_of_scope" for a
refusal, "combo" for an answer that joins two intents, and "kind" (faq, combo, refusal, followup).
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FAQ = os.path.join(ROOT, "examples", "faq")
OUT = os.path.join(ROOT, "examples", "assistant")

SYSTEM = "You are the customer-support assistant of Velora, a city bike and e-bike sharing service."
REFUSAL = ("Sorry, I can only help with Velora: our bikes and e-bikes, rides, your account, memberships and "
           "payments. For anything else, please ask a more suitable source. Is there anything about Velora I "
           "can help you with?")

# Training: FAQ questions of the training split at these positions (of 22 per intent).
TRAIN_PICK = (0, 8, 16)
# Validation: the FAQ training-split question at this position for every intent (not one of TRAIN_PICK).
VAL_PICK = 12
# Test: one FAQ test question per intent for these intents (position 4 of 9: a paraphrase, not the first).
TEST_INTENTS = ("create_account", "reset_password", "bike_wont_unlock", "end_ride", "dock_full", "pricing",
                "cancel_membership", "refund_request", "payment_methods", "lost_item", "accident_report",
                "ebike_battery", "helmet_policy", "service_hours", "contact_support", "reserve_bike")

# Two facts in one answer, written for this data set (each answer uses only canonical facts).
COMBOS_TRAIN = [
    ("How much is a 20 minute ride on a classic bike, and can I pay with PayPal?",
     "A 20-minute classic-bike ride without a membership costs EUR 1 to unlock plus EUR 0.15 per minute, so EUR 4. "
     "Yes, PayPal works: add it under Account > Wallet and mark it as default."),
    ("Can I reserve a bike for my friend and ride together with her?",
     "Yes: tap a bike on the map and choose \"Reserve\" to hold it for 10 minutes free of charge. To ride together, "
     "tap \"Unlock\" > \"Ride with friends\": you can unlock up to 4 bikes from your account, each billed at the "
     "normal price, and every rider must be at least 16."),
    ("My 15 year old wants to ride an e-bike, does he need a helmet?",
     "E-bikes are for riders of 16 or older, so at 15 he can only ride classic bikes, added to a family plan under "
     "Account > Family. We don't provide helmets, but we strongly recommend wearing your own."),
    ("I crashed and the bike is damaged now, what should I do?",
     "First make sure everyone is safe; if anyone is hurt call 112. Report the accident in the app (Help > Accident) "
     "within 24 hours with photos, and don't ride the bike on: end the ride and you won't pay for it. Every ride "
     "includes third-party liability insurance and our team will call you back."),
    ("How far does an e-bike go and what does it cost per minute?",
     "A fully charged e-bike goes about 60 km. It costs EUR 1 to unlock plus EUR 0.30 per minute without a "
     "membership; Monthly and Annual members pay EUR 0.15 per minute."),
    ("If I cancel my monthly plan, do I get money back for this month?",
     "No: after Account > Membership > Cancel plan your pass stays valid until the end of the month you paid for and "
     "won't renew, but we don't refund partly used months. Your account stays open, so you can still pay per ride."),
    ("Is Velora open at night, and how do I find a bike near me?",
     "Yes, Velora runs 24 hours a day, 7 days a week. Open the map in the app: it shows every station with the live "
     "number of bikes, and you can tap one for walking directions."),
    ("My card was declined, can I use Apple Pay instead?",
     "Yes. Your account is paused until the open balance is paid: add Apple Pay under Account > Wallet, mark it as "
     "default and tap \"Pay now\" on the banner. Rides unlock again as soon as the payment goes through."),
    ("How do I get a receipt for a ride I was overcharged for, and a refund?",
     "Open Account > Ride history and tap the ride to download its PDF receipt. For the refund, tap \"Report a "
     "problem\" > \"Wrong charge\" on the same ride: we answer within 2 working days and approved refunds reach your "
     "payment method within 5-7 working days."),
    ("The station is full and I'm in a hurry, can I just leave the bike next to it?",
     "Please don't: a bike left outside a station gets a EUR 20 relocation fee. Tap \"Station full\" in the app while "
     "you are there: you get 15 extra minutes free and the app shows the nearest stations with free docks."),
    ("How do I contact you about a lost phone I left on a bike?",
     "Send us the bike number, the station and the time of your ride in the in-app chat (Help > Lost and found); we "
     "keep found items for 30 days and will message you. For a phone, please also tell the local police."),
    ("What does the annual pass cost and how do I cancel it later?",
     "The Annual pass is EUR 149 per year. To stop it, go to Account > Membership > Cancel plan: it stays valid until "
     "the end of the year you paid for and does not renew."),
]
COMBOS_TEST = [
    ("What would a 10 minute e-bike trip cost, and do you take Google Pay?",
     "A 10-minute e-bike ride without a membership costs EUR 1 to unlock plus EUR 0.30 per minute, so EUR 4. Yes, we "
     "accept Google Pay: add it under Account > Wallet."),
    ("Somebody stole the bike while I was riding it and I fell when they grabbed it, help",
     "First make sure you are safe; if you are hurt call 112. Report the theft in the app (Help > Bike stolen) and to "
     "the police, and the accident under Help > Accident within 24 hours. We stop the ride from the time you report "
     "it, and with a police report you won't be charged the loss fee."),
    ("I want to bring my two kids of 14 and 16, can we all ride together?",
     "Yes: tap \"Unlock\" > \"Ride with friends\" to unlock up to 4 bikes from your account. Your 16-year-old can ride "
     "any bike; your 14-year-old may ride a classic bike once you add them to a family plan under Account > Family."),
    ("Does the day pass cover e-bikes and is there a time limit?",
     "The Day Pass costs EUR 9 and gives unlimited rides of up to 45 minutes each for 24 hours. E-bikes cost EUR 0.30 "
     "per minute without a Monthly or Annual membership. Buy it under Account > Membership."),
]

OOS_TRAIN = [
    "What's the weather going to be like tomorrow?",
    "Can you recommend a good restaurant near the central station?",
    "write me a poem about spring",
    "Who won the football match last night?",
    "How do I fix a flat tyre on my own bicycle at home?",
    "What is the capital of Australia?",
    "Can you help me with my maths homework?",
    "Which is better, an iPhone or an Android phone?",
    "Book me a taxi to the airport",
    "What time does the train to Amsterdam leave?",
    "tell me a joke",
    "How do I make a good pizza dough?",
]
OOS_TEST = [
    "Could you translate 'good morning' into Spanish for me?",
    "What's a good stock to invest in right now?",
    "Can you find me a cheap hotel for the weekend?",
    "how many calories does cycling for an hour burn",
]

OOS_VAL = [
    "Can you recommend a good book to read on holiday?",
    "What's the exchange rate of the euro to the dollar today?",
    "Help me write a cover letter for a job application",
    "Where can I buy a second-hand road bike?",
    "What's the best way to learn to play the guitar?",
    "Is the museum of modern art open on Mondays?",
]

# Two-turn conversations: a FAQ question with its canonical answer, then a follow-up answered from the same facts.
FOLLOWUPS_TRAIN = [
    ("pricing", "How much does a ride cost?", "And for an e-bike if I have a monthly pass?",
     "With a Monthly or Annual membership an e-bike costs EUR 0.15 per minute, half the normal price."),
    ("membership_plans", "What membership plans do you have?", "Which one should I take if I ride every day?",
     "If you ride every day, Monthly (EUR 19) or Annual (EUR 149) pays off quickly: the first 45 minutes of every "
     "classic-bike ride are free. Annual is the cheapest per month."),
    ("reserve_bike", "Can I reserve a bike?", "Can I reserve it for tomorrow morning?",
     "No, sorry: reservations can't be made in advance for a later time or day. A reservation holds a bike for 10 "
     "minutes from when you make it."),
    ("lost_item", "I left my bag in the bike basket", "How long do you keep it?",
     "Found items are kept at our depot for 30 days, and we will message you if yours turns up."),
    ("refund_request", "I want a refund", "How long does it take?",
     "We answer within 2 working days; an approved refund reaches your original payment method within 5-7 working "
     "days."),
    ("contact_support", "How can I contact customer service?", "Are you there on Sundays?",
     "Yes: the in-app chat and the phone line are open every day from 7:00 to 23:00, Sundays included."),
    ("ebike_battery", "How far can I go on an e-bike?", "What happens if it runs out while I'm riding?",
     "The bike keeps working as a normal bike, and from that point you pay the classic-bike price."),
    ("age_requirement", "What is the minimum age to ride?", "What about my 12 year old?",
     "Sorry, children under 14 cannot ride Velora bikes."),
]
FOLLOWUPS_TEST = [
    ("parking_fee", "Why did I get a parking fine?", "how long do I have to contest it?",
     "You can dispute the fee under Ride history > Report a problem within 14 days, with a photo if you have one."),
    ("promo_code", "How do I use a promo code?", "can I combine it with another code?",
     "No, sorry: each code can be used once per account and cannot be combined with another code."),
]


def msgs(*turns):
    out = [{"role": "system", "content": SYSTEM}]
    for i, t in enumerate(turns):
        out.append({"role": "user" if i % 2 == 0 else "assistant", "content": t})
    return out


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_intent(rows):
    d = {}
    for r in rows:
        d.setdefault(r["label"], []).append(r["text"])
    return d


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    with open(os.path.join(FAQ, "answers.json"), encoding="utf-8") as f:
        answers = json.load(f)
    train_q = by_intent(read_jsonl(os.path.join(FAQ, "train.jsonl")))
    test_q = by_intent(read_jsonl(os.path.join(FAQ, "test.jsonl")))
    train, test = [], []
    for intent, answer in answers.items():
        for k in TRAIN_PICK:
            train.append({"messages": msgs(train_q[intent][k], answer), "intent": intent, "kind": "faq"})
    for q, a in COMBOS_TRAIN:
        train.append({"messages": msgs(q, a), "intent": "combo", "kind": "combo"})
    for q in OOS_TRAIN:
        train.append({"messages": msgs(q, REFUSAL), "intent": "out_of_scope", "kind": "refusal"})
    for intent, q1, q2, a2 in FOLLOWUPS_TRAIN:
        train.append({"messages": msgs(q1, answers[intent], q2, a2), "intent": intent, "kind": "followup"})
    val = [{"messages": msgs(train_q[intent][VAL_PICK], answer), "intent": intent, "kind": "faq"}
           for intent, answer in answers.items()]
    val += [{"messages": msgs(q, REFUSAL), "intent": "out_of_scope", "kind": "refusal"} for q in OOS_VAL]
    for intent in TEST_INTENTS:
        test.append({"messages": msgs(test_q[intent][4], answers[intent]), "intent": intent, "kind": "faq"})
    for q, a in COMBOS_TEST:
        test.append({"messages": msgs(q, a), "intent": "combo", "kind": "combo"})
    for q in OOS_TEST:
        test.append({"messages": msgs(q, REFUSAL), "intent": "out_of_scope", "kind": "refusal"})
    for intent, q1, q2, a2 in FOLLOWUPS_TEST:
        test.append({"messages": msgs(q1, answers[intent], q2, a2), "intent": intent, "kind": "followup"})
    # no test question may repeat a training one
    seen = {m["content"].lower() for r in train for m in r["messages"] if m["role"] == "user"}
    for name, rows in (("test", test), ("val", val)):
        last_user = [[m for m in r["messages"] if m["role"] == "user"][-1]["content"] for r in rows]
        dup = [q for q in last_user if q.lower() in seen]
        if dup:
            sys.exit("%s questions also in training: %r" % (name, dup))
    held = {[m for m in r["messages"] if m["role"] == "user"][-1]["content"].lower() for r in test}
    dup = [q for r in val for q in [[m for m in r["messages"] if m["role"] == "user"][-1]["content"]]
           if q.lower() in held]
    if dup:
        sys.exit("val questions also in test: %r" % dup)
    os.makedirs(OUT, exist_ok=True)
    write(os.path.join(OUT, "train.jsonl"), train)
    write(os.path.join(OUT, "test.jsonl"), test)
    write(os.path.join(OUT, "val.jsonl"), val)
    entries = [{"text": a, "label": i} for i, a in answers.items()]
    write(os.path.join(OUT, "faq_entries.jsonl"), entries)
    write(os.path.join(OUT, "intents.jsonl"), entries + [{"text": REFUSAL, "label": "out_of_scope"}])
    print("train %d, val %d, test %d conversations -> %s" % (len(train), len(val), len(test), OUT))


if __name__ == "__main__":
    main()
