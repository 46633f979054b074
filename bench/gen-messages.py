#!/usr/bin/python3
"""Generates realistic test messages for the benchmarks, reproducibly.

    gen-messages.py [-n N] [-s SEED] [--size SIZE] DIR

Writes DIR/msg-000001.eml ... one message a file, LF line ends, no leading
"From " envelope line (an MTA hands the envelope sender with -f). The same
N and SEED give byte-identical files on every run and every machine: all
randomness, dates included, comes from one seeded random.Random.

Sizes follow a mix seen on ordinary mail servers:
  80 %  2-20 KiB   plain text, or multipart/alternative text + HTML
  16 %  ~100 KiB   multipart/mixed with a base64 attachment (60-160 KiB)
   4 %  ~1 MiB     multipart/mixed with a base64 attachment (0.8-1.3 MiB)
Every message has From, To, Subject, Date, Message-ID, MIME-Version and
three Received fields; some have folded long fields (DKIM-Signature,
List-Id, References) and body lines starting with "From " (which an mbox
writer must quote).

--size makes every message about SIZE bytes (k/m/g suffixes), e.g. one
100 MiB message for the RSS benchmark: gen-messages.py -n 1 --size 100m DIR.
"""

import argparse
import base64
import email.utils
import os
import random
import sys

WORDS = (
    "the of and to in is that for it as was with be by on not he this are "
    "or his from at which but have an they you were her she there been one "
    "all we their has would when if so no will more about out up what can "
    "meeting report budget invoice release server backup schedule review "
    "patch kernel deadline project customer order shipping quarter update "
    "please thanks regards attached below above question answer tomorrow "
    "monday friday morning office network mailbox delivery queue disk "
    "config version build test failure success draft final agenda notes"
).split()

FIRST = "alice bob carol dave erin frank grace heidi ivan judy mallory " \
        "niaj olivia peggy rupert sybil trent victor walter".split()
LAST = "smith jones brown taylor wilson davies evans thomas johnson " \
       "roberts walker wright robinson thompson white hughes".split()
DOMAINS = "example.com example.org example.net mail.example.com " \
          "lists.example.org corp.example.net".split()
RELAYS = "mx1 mx2 smtp-out relay mail gw edge".split()
ATTACH = [("application/pdf", "report.pdf"), ("image/png", "screenshot.png"),
          ("application/zip", "logs.zip"), ("image/jpeg", "photo.jpg"),
          ("application/vnd.openxmlformats-officedocument."
           "spreadsheetml.sheet", "figures.xlsx")]

BASE_TIME = 1_700_000_000      # fixed, so that dates are reproducible


def parse_size(text):
    mult = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    text = text.strip().lower()
    if text and text[-1] in mult:
        return int(text[:-1]) * mult[text[-1]]
    return int(text)


def person(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    addr = f"{first}.{last}@{rng.choice(DOMAINS)}"
    return f"{first.title()} {last.title()} <{addr}>", addr


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def paragraph_lines(rng, nbytes):
    """Text of about nbytes, wrapped at 72 columns; now and then a line that
    begins with "From " or ">From " as real mail has."""
    lines, total, line = [], 0, []
    while total < nbytes:
        w = rng.choice(WORDS)
        if sum(len(x) + 1 for x in line) + len(w) > 72:
            text = " ".join(line)
            r = rng.random()
            if r < 0.01:
                text = "From " + text
            elif r < 0.015:
                text = ">From " + text
            lines.append(text)
            total += len(text) + 1
            line = []
            if rng.random() < 0.12:
                lines.append("")
                total += 1
        line.append(w)
    return lines


def b64_lines(rng, nbytes):
    data = rng.randbytes(nbytes)
    enc = base64.b64encode(data).decode("ascii")
    return [enc[i:i + 76] for i in range(0, len(enc), 76)]


def fold(name, value, width=76):
    """A long field folded at blanks, as MUAs and signers write it."""
    out, line = [], f"{name}: "
    for part in value.split(" "):
        if len(line) + len(part) > width and line.strip():
            out.append(line.rstrip())
            line = "\t"
        line += part + " "
    out.append(line.rstrip())
    return out


def headers(rng, when, from_hdr, from_addr, to_hdr, to_addr, subject, msgid):
    h = []
    hosts = [f"{rng.choice(RELAYS)}.{from_addr.split('@')[1]}",
             f"{rng.choice(RELAYS)}.{rng.choice(DOMAINS)}",
             f"{rng.choice(RELAYS)}.{to_addr.split('@')[1]}"]
    # Newest first, each a few seconds after the one below it.
    t = when + 3 + rng.randrange(20)
    for i in range(3, 0, -1):
        src = hosts[i - 2] if i > 1 else "client.example.net"
        ip = f"198.51.100.{rng.randrange(1, 255)}"      # RFC 5737
        qid = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
                      for _ in range(12))
        date = email.utils.formatdate(t, usegmt=True)
        h.append(f"Received: from {src} ({src} [{ip}])")
        h.append(f"\tby {hosts[i - 1]} with ESMTPS id {qid}")
        h.append(f"\tfor <{to_addr}>; {date}")
        t -= 1 + rng.randrange(5)
    if rng.random() < 0.5:
        sig = base64.b64encode(rng.randbytes(128)).decode("ascii")
        bh = base64.b64encode(rng.randbytes(32)).decode("ascii")
        h += fold("DKIM-Signature",
                  f"v=1; a=rsa-sha256; c=relaxed/relaxed; "
                  f"d={from_addr.split('@')[1]}; s=sel1; "
                  f"h=from:to:subject:date:message-id; bh={bh}; b={sig}")
    h.append(f"From: {from_hdr}")
    h.append(f"To: {to_hdr}")
    if rng.random() < 0.3:
        cc, _ = person(rng)
        h.append(f"Cc: {cc}")
    h.append(f"Subject: {subject}")
    h.append(f"Date: {email.utils.formatdate(when, usegmt=True)}")
    h.append(f"Message-ID: {msgid}")
    if rng.random() < 0.3:
        refs = " ".join(f"<{rng.getrandbits(64):x}@{rng.choice(DOMAINS)}>"
                        for _ in range(1 + rng.randrange(6)))
        h += fold("References", refs)
    if rng.random() < 0.2:
        h.append(f"List-Id: {words(rng, 2)} <dev.{rng.choice(DOMAINS)}>")
    if rng.random() < 0.5:
        h.append("User-Agent: Mozilla/5.0 Thunderbird/115.4.1")
    h.append("MIME-Version: 1.0")
    return h


def pick_size(rng):
    r = rng.random()
    if r < 0.80:
        return int(2048 * (10 ** rng.uniform(0, 1)))      # 2-20 KiB, log
    if r < 0.96:
        return rng.randrange(60 * 1024, 160 * 1024)
    return rng.randrange(800 * 1024, 1300 * 1024)


def message(rng, index, size):
    when = BASE_TIME + index * 37 + rng.randrange(30)
    from_hdr, from_addr = person(rng)
    to_hdr, to_addr = person(rng)
    subject = words(rng, 3 + rng.randrange(6)).capitalize()
    if rng.random() < 0.3:
        subject = "Re: " + subject
    msgid = f"<{when}.{rng.getrandbits(48):x}@{from_addr.split('@')[1]}>"
    head = headers(rng, when, from_hdr, from_addr, to_hdr, to_addr, subject,
                   msgid)
    head_len = sum(len(x) + 1 for x in head)
    boundary = f"=_b{rng.getrandbits(64):016x}"
    body = []
    room = max(size - head_len - 200, 256)
    if size < 40 * 1024 and rng.random() < 0.6:
        head.append("Content-Type: text/plain; charset=utf-8")
        head.append("Content-Transfer-Encoding: 8bit")
        body = paragraph_lines(rng, room)
    elif size < 40 * 1024:
        head.append(f'Content-Type: multipart/alternative; '
                    f'boundary="{boundary}"')
        text = paragraph_lines(rng, room // 3)
        html = ["<html><body>"] + \
            [f"<p>{line}</p>" for line in paragraph_lines(rng, room // 2)] + \
            ["</body></html>"]
        body = ["This is a multi-part message in MIME format.", "",
                f"--{boundary}", "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit", ""] + text + \
               ["", f"--{boundary}", "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: 8bit", ""] + html + \
               ["", f"--{boundary}--"]
    else:
        ctype, name = rng.choice(ATTACH)
        text = paragraph_lines(rng, 600 + rng.randrange(3000))
        text_len = sum(len(x) + 1 for x in text)
        raw = max((room - text_len - 400) * 57 // 77, 1)  # base64 + newlines
        head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = ["This is a multi-part message in MIME format.", "",
                f"--{boundary}", "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: 8bit", ""] + text + \
               ["", f"--{boundary}", f'Content-Type: {ctype}; name="{name}"',
                "Content-Transfer-Encoding: base64",
                f'Content-Disposition: attachment; filename="{name}"', ""] + \
            b64_lines(rng, raw) + ["", f"--{boundary}--"]
    return "\n".join(head) + "\n\n" + "\n".join(body) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="how many (1000)")
    ap.add_argument("-s", "--seed", type=int, default=1, help="RNG seed (1)")
    ap.add_argument("--size", help="make every message about this size")
    ap.add_argument("dir")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    fixed = parse_size(args.size) if args.size else None
    os.makedirs(args.dir, exist_ok=True)
    total = 0
    for i in range(1, args.n + 1):
        size = fixed if fixed is not None else pick_size(rng)
        data = message(rng, i, size).encode("utf-8")
        with open(os.path.join(args.dir, f"msg-{i:06d}.eml"), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"{args.n} messages, {total} bytes ({total / args.n / 1024:.1f} KiB "
          f"average) in {args.dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
