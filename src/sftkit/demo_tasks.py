"""The task of ``sftkit demo rl``: support-ticket routing (English and Chinese) with an annotator's systematic slip.

Each question is a customer ticket; the answer is the team that handles it (``#### returns``). The
verified answer (``meta.final_answer``) is the team that actually resolved the ticket, from the ticket
system. The demonstrations SFT imitates were written by annotators who sent a share (``slip_rate``) of
the refund/return tickets to ``billing`` ("it is about money") — a systematic slip real annotation has.
SFT imitates it; an answer-match reward against the verified team does not.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PRODUCTS = {"en": ["laptop", "phone", "headset", "router", "tablet", "smart watch", "printer", "camera", "speaker",
                   "keyboard", "monitor", "charger"],
            "zh": ["笔记本电脑", "手机", "耳机", "路由器", "平板", "智能手表", "打印机", "相机", "音箱", "键盘", "显示器",
                   "充电器"]}
PROBLEMS = {  # team -> ticket bodies per language ({p} = product)
    "hardware": {"en": ["my {p} will not turn on", "the screen of my {p} is cracked", "my {p} keeps overheating",
                        "the battery of my {p} drains in an hour", "my {p} makes a clicking noise",
                        "the buttons on my {p} stopped working"],
                 "zh": ["我的{p}开不了机", "{p}的屏幕裂了", "{p}一直发烫", "{p}的电池一小时就没电了", "{p}有咔哒的响声",
                        "{p}的按键失灵了"]},
    "billing": {"en": ["I was charged twice for my {p}", "my invoice for the {p} shows the wrong amount",
                       "please update the credit card on my account", "I need a VAT invoice for my {p}",
                       "my monthly payment failed", "why did my subscription price go up"],
                "zh": ["{p}被重复扣款了", "{p}的发票金额不对", "请帮我更换绑定的信用卡", "我需要{p}的增值税发票",
                       "这个月的自动扣款失败了", "为什么订阅费涨价了"]},
    "accounts": {"en": ["I cannot log in to my account", "I forgot my password", "please change the email on my account",
                        "my account was locked after the {p} update", "I want to delete my account",
                        "two-factor codes do not arrive"],
                 "zh": ["我登录不了账号", "我忘记密码了", "请修改账号绑定的邮箱", "更新{p}后账号被锁定了", "我想注销账号",
                        "收不到两步验证码"]},
    "shipping": {"en": ["my {p} has not arrived yet", "the tracking number for my {p} does not work",
                        "the {p} was delivered to the wrong address", "can I change the delivery date of my {p}",
                        "the courier lost my {p}", "my {p} order is stuck in customs"],
                 "zh": ["{p}还没有送到", "{p}的快递单号查不到", "{p}送错地址了", "能改一下{p}的送货日期吗", "快递把{p}弄丢了",
                        "{p}的订单卡在海关了"]},
    "returns": {"en": ["I want a refund for my {p}", "I would like to return the {p}", "please send me my money back for the {p}",
                       "the {p} is not what I ordered, I want to send it back", "how do I get a refund for the {p}",
                       "I returned the {p} two weeks ago and have no refund yet"],
                "zh": ["我要给{p}退款", "我想退货，{p}不要了", "请把{p}的钱退给我", "{p}和订单不符，我要退回",
                       "{p}怎么申请退款", "{p}两周前就寄回了，还没收到退款"]},
}
OPENERS = {"en": ["Hello,", "Hi team,", "Hi,", "Good morning,", "Dear support,", ""],
           "zh": ["你好，", "客服你好，", "您好，", "在吗？", ""]}
CLOSERS = {"en": ["Order {n}.", "Thanks.", "Please help.", "This is urgent.", "Order number {n}, thank you.", ""],
           "zh": ["订单号{n}。", "谢谢。", "麻烦尽快处理。", "急！", "订单{n}，谢谢。", ""]}
PROMPT = {"en": "Route to hardware, billing, accounts, shipping or returns: {t}",
          "zh": "分派到 hardware, billing, accounts, shipping 或 returns：{t}"}
SHARES = {"hardware": 0.175, "billing": 0.175, "accounts": 0.175, "shipping": 0.175, "returns": 0.3}
SLIP_TEAM, SLIP_TO = "returns", "billing"


def ticket(rng: random.Random, team: str, lang: str) -> str:
    """One ticket text of a team, in a language."""
    body = rng.choice(PROBLEMS[team][lang]).format(p=rng.choice(PRODUCTS[lang]))
    n = rng.randint(100000, 999999)
    sep = " " if lang == "en" else ""
    text = sep.join(s for s in (rng.choice(OPENERS[lang]), body + ("." if lang == "en" else "。"),
                                rng.choice(CLOSERS[lang]).format(n=n)) if s)
    return PROMPT[lang].format(t=text)


def record(rng: random.Random, team: str, slip_rate: float, split: str, index: int) -> dict:
    """A canonical conversation: the ticket, the annotator's demonstration, the verified team."""
    lang = rng.choice(["en", "zh"])
    slipped = team == SLIP_TEAM and rng.random() < slip_rate
    shown = SLIP_TO if slipped else team
    return {"messages": [{"role": "user", "content": ticket(rng, team, lang)},
                         {"role": "assistant", "content": f"#### {shown}"}],
            "meta": {"final_answer": team, "kind": team, "lang": lang, "slipped": slipped},
            "origin": {"file": f"demo_rl/{split}.jsonl", "line": index + 1, "index": index}}


def make_split(seed: int, n: int, slip_rate: float, split: str) -> list[dict]:
    """``n`` records, teams in their ``SHARES`` (shuffled); slips only where ``slip_rate`` > 0."""
    rng = random.Random(f"{seed}-{split}")
    teams = [t for t, s in SHARES.items() for _ in range(round(s * n))][:n]
    rng.shuffle(teams)
    return [record(rng, t, slip_rate, split, i) for i, t in enumerate(teams)]


def make_data(seed: int, n_train: int = 400, n_dev: int = 200, n_test: int = 500, slip_rate: float = 0.7) -> dict:
    """Train (slipped demonstrations), dev (decides when SFT has plateaued) and test (held out, never tuned on)."""
    train = make_split(seed, n_train, slip_rate, "train")
    seen = {r["messages"][0]["content"] for r in train}
    held = {s: [r for r in make_split(seed, 2 * n, 0.0, s) if r["messages"][0]["content"] not in seen][:n]
            for s, n in (("dev", n_dev), ("test", n_test))}
    for recs in held.values():  # lineage names the line each record has in its written file
        for i, r in enumerate(recs):
            r["origin"] = {**r["origin"], "line": i + 1, "index": i}
    return {"train": train, **held}  # dev/test questions never appear in train


def write(data: dict, folder: Path) -> dict[str, Path]:
    """One canonical JSONL file per split; returns split -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, recs in data.items():
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return paths
