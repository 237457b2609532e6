#!/usr/bin/env python3
"""Cost of the care-team check at the SQL level on SQLite (issue #14).

Builds a clinic with the real migrations (0001..latest), N patients in the
default team plus a second team, and times, per call, the existence query the
services ran before (`SELECT count(*) FROM patients WHERE id = ?`) against the
care-team facts query of store::care::facts (team match; the break-glass
lookup only runs when no team is shared, measured separately).

    python3 scripts/bench-care-check.py [patients] [iterations]
"""
import glob, os, random, sqlite3, sys, tempfile, time, uuid

n_patients = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "migrations", "sqlite")
path = os.path.join(tempfile.mkdtemp(), "bench.db")
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
ups = sorted(glob.glob(os.path.join(root, "*.up.sql")))
users = [uuid.uuid4().bytes for _ in range(20)]
now = "2026-12-01T00:00:00Z"
for up in ups:
    if os.path.basename(up).startswith("0009"):
        # Data first, so the migration's backfill puts everyone in the default team.
        for i, u in enumerate(users):
            db.execute("INSERT INTO users (id,email,name,role,status,password_hash,created_at,updated_at) VALUES (?,?,?,?,?,?,?,?)",
                       (u, f"u{i}@x.test", "U", "provider", "active", "x", now, now))
        cols = [r[1] for r in db.execute("PRAGMA table_info(patients)")]
        for i in range(n_patients):
            row = {c: None for c in cols}
            row.update(id=uuid.uuid4().bytes, mrn=f"M{i:08d}", given_name="A", family_name="B",
                       search_fg="b a", search_gf="a b", birth_date="1980-01-01", sex="female",
                       version=1, created_by=users[0], created_at=now, updated_at=now)
            row = {k: v for k, v in row.items() if v is not None}
            db.execute(f"INSERT INTO patients ({','.join(row)}) VALUES ({','.join('?' * len(row))})", list(row.values()))
        db.commit()
    db.executescript(open(up).read())
db.commit()
patients = [r[0] for r in db.execute("SELECT id FROM patients")]
# A second team holding a tenth of the patients and two clinicians.
team = uuid.uuid4().bytes
db.execute("INSERT INTO care_teams (id,name,is_default,created_at) VALUES (?,?,0,?)", (team, "Ward B", now))
for p in patients[: n_patients // 10]:
    db.execute("INSERT INTO care_team_patients VALUES (?,?,?)", (team, p, now))
for u in users[:2]:
    db.execute("INSERT INTO care_team_members VALUES (?,?,?)", (team, u, now))
db.commit()

EXISTS = "SELECT count(*) FROM patients WHERE id = $1"
FACTS = ("SELECT t.name FROM patients p LEFT JOIN care_team_patients tp ON tp.patient_id = p.id "
         "LEFT JOIN care_team_members m ON m.team_id = tp.team_id AND m.user_id = $2 "
         "LEFT JOIN care_teams t ON t.id = m.team_id WHERE p.id = $1")
BREAK_GLASS = ("SELECT id FROM break_glass WHERE user_id = $1 AND patient_id = $2 AND expires_at > $3 "
               "AND ended_at IS NULL ORDER BY expires_at DESC LIMIT 1")

def bench(sql, args):
    # Bind `$N` by number, as sqlx does (Python binds by order of appearance).
    picks = [random.choice(patients) for _ in range(iters)]
    rows = 0
    t = time.perf_counter()
    for p in picks:
        rows += len(db.execute(sql, {str(i + 1): v for i, v in enumerate(args(p))}).fetchall())
    assert rows >= iters or "break_glass" in sql, "the query found nothing: wrong bindings"
    return (time.perf_counter() - t) / iters * 1e6

random.seed(1)
u = users[0]
a = bench(EXISTS, lambda p: (p,))
b = bench(FACTS, lambda p: (p, u))
c = bench(BREAK_GLASS, lambda p: (u, p, now))
print(f"SQLite {sqlite3.sqlite_version}, {n_patients} patients, {iters} calls each (Python sqlite3, one connection)")
print(f"  before: existence check        {a:6.1f} us/call")
print(f"  after:  care-team facts        {b:6.1f} us/call  (+{b - a:.1f} us)")
print(f"  break-glass lookup (no team)   {c:6.1f} us/call  (only when no team is shared)")
