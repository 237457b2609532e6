#!/usr/bin/env python3
"""Measure the interoperability closing numbers (docs/INTEROP.md, issue 15):

1. a system bulk export ($export) of an `amal demo --patients N` clinic:
   time from kick-off to manifest, the server's peak resident memory during
   the export, the NDJSON size and each type's line count compared with the
   rows the database holds; then the same for a Group export of the demo's
   default care team (every patient) by the demo provider, a member;
2. the HL7 v2 import rate: M fresh ORU^R01 messages (8 results each, one per
   demo patient, built from the corpus message 05) imported with
   `amal import hl7 FILE` into the same database after the server stops.

Usage:
  scripts/measure-interop.py [--amal target/release/amal] [--patients 10000]
                             [--messages 1000] [--postgres URL]
--postgres takes a server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres);
a fresh database is created on it and dropped at the end. Progress goes to
stderr, the results to stdout. Standard library only (plus psql for
PostgreSQL counts).
"""
import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PASSWORD = "measure password 15"
# The care team every demo patient and clinician is in (migration 0009).
DEFAULT_TEAM = "00000000-0000-7000-8000-000000000001"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "crates/amal/tests/data/hl7/05_cmp_eight_results.hl7")

# Vital-sign Observations a set becomes (as crates/amal/tests/it/fhir_demo_export.rs).
VITALS_SQL = """SELECT CAST(COALESCE(SUM(
 (CASE WHEN systolic IS NOT NULL OR diastolic IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN heart_rate IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN respiratory_rate IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN temperature IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN spo2 IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN weight_kg IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN height_cm IS NOT NULL THEN 1 ELSE 0 END) +
 (CASE WHEN bmi IS NOT NULL THEN 1 ELSE 0 END)), 0) AS BIGINT) FROM vitals"""

EXPECTED = [
    ("Patient", ["SELECT count(*) FROM patients"]),
    ("AllergyIntolerance", ["SELECT count(*) FROM allergies"]),
    ("Condition", ["SELECT count(*) FROM problems"]),
    ("MedicationRequest", ["SELECT count(*) FROM prescriptions"]),
    ("Observation", ["SELECT count(*) FROM labs", VITALS_SQL]),
    ("DocumentReference", ["SELECT count(*) FROM notes WHERE status = 'final'"]),
    ("Practitioner", ["SELECT count(*) FROM users WHERE role IN ('provider', 'nurse')"]),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Db:
    def __init__(self, url):
        self.url = url

    def query(self, sql):
        if self.url.startswith("postgres"):
            out = subprocess.run(["psql", self.url, "-tAF", "\t", "-c", sql],
                                 check=True, capture_output=True, text=True).stdout
            return [tuple(line.split("\t")) for line in out.splitlines() if line]
        path = self.url.removeprefix("sqlite://")
        with sqlite3.connect(path) as c:
            return [tuple(str(x) for x in row) for row in c.execute(sql)]

    def count(self, sqls):
        return sum(int(self.query(s)[0][0]) for s in sqls)


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def http(method, url, token=None, body=None, headers=None):
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        return urllib.request.urlopen(req, timeout=600)
    except urllib.error.HTTPError as e:
        return e


def start_demo(amal, patients, work, db_url):
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": work,
           "AMAL_BIND": "127.0.0.1:0", "AMAL_DEMO_PASSWORD": PASSWORD,
           "AMAL_RATE_LIMIT_READ": "1000000/60s", "LOG_LEVEL": "warn"}
    if db_url:
        env["DATABASE_URL"] = db_url
    started = time.time()
    child = subprocess.Popen([amal, "demo", "--patients", str(patients), "--keep"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    base = data = None
    for line in child.stdout:
        m = re.search(r"running at (\S+)", line)
        if m:
            base = m.group(1).rstrip("/")
        if line.startswith("Data ("):
            data = line.rsplit("): ", 1)[1].strip()
        if base and data:
            break
    if not (base and data):
        sys.exit("the demo did not start")
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in child.stdout], daemon=True).start()
    log("demo of %d patients seeded and serving at %s in %.0f s (data %s)"
        % (patients, base, time.time() - started, data))
    return child, base, data


def sign_in(base, email):
    r = http("POST", base + "/api/auth/signin",
             body=json.dumps({"email": email, "password": PASSWORD}).encode(),
             headers={"content-type": "application/json"})
    return json.load(r)["accessToken"]


def measure_export(child, base, db, path, token):
    pid = child.pid
    rss_before = proc_kb(pid, "VmRSS")
    hwm_seed = proc_kb(pid, "VmHWM")
    # Reset the peak (Linux clear_refs "5") so VmHWM is the export's own peak.
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")
    peak = [rss_before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc_kb(pid, "VmRSS"))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.time()
    r = http("GET", base + path, token, headers={"Prefer": "respond-async"})
    if r.status != 202:
        sys.exit("kick-off answered %d: %s" % (r.status, r.read()[:300]))
    status_url = r.headers["Content-Location"]
    last = ""
    while True:
        r = http("GET", status_url, token)
        if r.status == 200:
            manifest = json.load(r)
            break
        if r.status != 202:
            sys.exit("status answered %d" % r.status)
        progress = r.headers.get("X-Progress", "")
        if progress != last:
            log("  %5.0f s  %s" % (time.time() - t0, progress))
            last = progress
        time.sleep(1)
    took = time.time() - t0
    done.set()
    hwm = proc_kb(pid, "VmHWM")
    log("export complete in %.1f s; downloading the files" % took)
    rows, total_lines, total_bytes = [], 0, 0
    for o in manifest["output"]:
        r = http("GET", o["url"], token)
        lines = size = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            lines += chunk.count(b"\n")
        want = db.count(dict(EXPECTED)[o["type"]])
        rows.append((o["type"], lines, want, o["count"]))
        total_lines += lines
        total_bytes += size
    return {"seconds": took, "rss_before_mb": rss_before / 1024,
            "peak_rss_mb": max(hwm, peak[0]) / 1024, "seed_hwm_mb": hwm_seed / 1024,
            "rows": rows, "lines": total_lines, "mb": total_bytes / 1e6}


def hl7_escape(s):
    return (s.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("&", "\\T\\").replace("~", "\\R\\"))


def measure_hl7(amal, data, db_url, db, messages, work):
    template = open(TEMPLATE, encoding="utf-8").read()
    patients = db.query("SELECT mrn, family_name, given_name, birth_date FROM patients "
                        "ORDER BY mrn LIMIT %d" % messages)
    batch = []
    for i, (mrn, family, given, birth) in enumerate(patients):
        pid = "PID|1||%s^^^CLINIC^MR||%s^%s^^^^^L||%s|" % (
            mrn, hl7_escape(family), hl7_escape(given), birth.replace("-", ""))
        msg = re.sub(r"PID\|1\|\|4000000001\^\^\^CLINIC\^MR\|\|Haddad\^Amira\^\^\^\^\^L\|\|19800412\|",
                     lambda _: pid, template)
        batch.append(msg.replace("|C05|", "|M%06d|" % i))
    path = os.path.join(work, "batch.hl7")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(batch))
    results_before = db.count(["SELECT count(*) FROM labs"])
    env = {"PATH": os.environ.get("PATH", ""), "AMAL_DATA_DIR": data, "DATABASE_URL": db_url}
    log("importing %d HL7 messages (%d results)" % (len(batch), 8 * len(batch)))
    t0 = time.time()
    out = subprocess.run([amal, "import", "hl7", path, "--user", "provider@demo.amal.test"],
                         env=env, capture_output=True, text=True)
    took = time.time() - t0
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr
    stored = db.count(["SELECT count(*) FROM labs"]) - results_before
    return {"seconds": took, "messages": len(batch), "stored": stored,
            "rate": len(batch) / took, "summary": summary, "ok": out.returncode == 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amal", default=os.path.join(ROOT, "target/release/amal"))
    ap.add_argument("--patients", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--postgres")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="amal-measure-")
    db_url = None
    if a.postgres:
        name = "amal_measure_%d" % os.getpid()
        subprocess.run(["psql", a.postgres, "-qc", "CREATE DATABASE %s" % name], check=True)
        db_url = a.postgres.rsplit("/", 1)[0] + "/" + name
    child, base, data = start_demo(a.amal, a.patients, work, db_url)
    db = Db(db_url or "sqlite://%s/amal.db" % data)
    try:
        e = measure_export(child, base, db, "/fhir/R4/$export",
                           sign_in(base, "admin@demo.amal.test"))
        provider = sign_in(base, "provider@demo.amal.test")
        group = "/fhir/R4/Group/%s" % DEFAULT_TEAM
        members = json.load(http("GET", base + group, provider))["quantity"]
        g = measure_export(child, base, db, group + "/$export", provider)
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=120)
    h = measure_hl7(a.amal, data, db.url, db, a.messages, work)
    engine = "PostgreSQL" if a.postgres else "SQLite"
    print("## %s, %s, %d patients" % (engine, os.path.basename(os.path.dirname(a.amal)), a.patients))
    print("export: %d resources, %.0f MB NDJSON in %.1f s (kick-off to manifest); "
          "server RSS %.0f MB before, peak %.0f MB during the export (peak while seeding %.0f MB)"
          % (e["lines"], e["mb"], e["seconds"], e["rss_before_mb"], e["peak_rss_mb"], e["seed_hwm_mb"]))
    ok = True
    for ty, lines, want, listed in e["rows"]:
        same = lines == want == listed
        ok &= same
        print("  %-18s %8d lines, database %8d %s" % (ty, lines, want, "=" if same else "MISMATCH"))
    print("group export (the default team, %d patients, by a member): %d resources, %.0f MB in %.1f s; "
          "peak %.0f MB (RSS %.0f MB before)"
          % (members, g["lines"], g["mb"], g["seconds"], g["peak_rss_mb"], g["rss_before_mb"]))
    for ty, lines, want, listed in g["rows"]:
        same = lines == want == listed
        ok &= same
        print("  %-18s %8d lines, database %8d %s" % (ty, lines, want, "=" if same else "MISMATCH"))
    # The database counts are whole tables: right because the team holds every patient.
    ok &= members == e["rows"][0][2]
    print("hl7: %d messages in %.1f s = %.1f messages/s (%.0f results/s), %d results stored; CLI: %s"
          % (h["messages"], h["seconds"], h["rate"], h["rate"] * 8, h["stored"], h["summary"]))
    ok &= h["ok"] and h["stored"] == 8 * h["messages"]
    if a.postgres:
        subprocess.run(["psql", a.postgres, "-qc", "DROP DATABASE %s" % db_url.rsplit("/", 1)[1]])
    subprocess.run(["rm", "-rf", work, data])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
