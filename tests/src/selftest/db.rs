//! PostgreSQL behind two PgBouncers in a backend host, used from a client host.

use std::time::Duration;

use crate::{
    Lab, LabOptions, PgBouncer, PgBouncerOptions, PoolMode, Postgres, pgbench, pgbench_init,
    processes_in_netns_inodes, psql,
};

#[test]
fn postgres_behind_two_pgbouncers() {
    let (pids, inodes) = {
        let lab = Lab::new(LabOptions::default()).expect("create lab");
        let db = lab.add_host("db", &lab.v4(51)).expect("add db");
        let cl = lab.add_host("cl", &lab.v4(52)).expect("add cl");
        let pg = Postgres::start(&db, 5432).expect("start postgres");
        assert_eq!(pg.psql("SELECT 40 + 2").expect("psql on db"), "42");
        let session = PgBouncer::start(
            &db,
            "*",
            6432,
            pg.addr(),
            pg.port(),
            &PgBouncerOptions::default(),
        )
        .expect("start pgbouncer 6432");
        let tx_opts = PgBouncerOptions {
            pool_mode: PoolMode::Transaction,
            ..PgBouncerOptions::default()
        };
        let tx = PgBouncer::start(&db, "*", 6433, pg.addr(), pg.port(), &tx_opts)
            .expect("start pgbouncer 6433");
        for port in [6432, 6433] {
            let one = psql(&cl, db.ipv4(), port, "SELECT 1").expect("SELECT 1 from cl");
            assert_eq!(one, "1", "through port {port}");
        }
        let mode = tx.admin("SHOW CONFIG").expect("SHOW CONFIG");
        assert!(mode.contains("pool_mode|transaction"), "{mode}");
        let pools = session.admin("SHOW POOLS").expect("SHOW POOLS");
        assert!(pools.contains("postgres"), "{pools}");
        // Direct from the client host too, and pgbench through a bouncer.
        assert_eq!(psql(&cl, pg.addr(), 5432, "SELECT 1").expect("direct"), "1");
        pgbench_init(&cl, pg.addr(), 5432, 1).expect("pgbench -i");
        let report = pgbench(
            &cl,
            db.ipv4(),
            6433,
            &["-c", "2", "-t", "20", "-n"],
            Duration::from_secs(60),
        )
        .expect("pgbench through 6433");
        assert!(
            report.contains("number of transactions actually processed: 40"),
            "{report}"
        );
        let pids = [pg.pid(), session.pid(), tx.pid()];
        for pid in pids {
            assert!(lab.is_running(pid), "{pid} died");
        }
        (pids, lab.netns_inodes().expect("inodes"))
    };
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} outlived the lab"
        );
    }
    let live: Vec<u64> = crate::list_netns()
        .iter()
        .filter_map(|ns| crate::netns_inode(ns).ok())
        .collect();
    let dead: Vec<u64> = inodes.into_iter().filter(|i| !live.contains(i)).collect();
    assert!(
        processes_in_netns_inodes(&dead).is_empty(),
        "backends outlived the lab"
    );
}
