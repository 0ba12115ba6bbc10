// This app's schema, one step per version. Never edit a step that has shipped: add one.
export const MIGRATIONS = [
  {
    version: 1,
    name: "create visit counter",
    sql: `
      create table visits (
        id integer primary key check (id = 1),
        count bigint not null default 0
      );
      insert into visits (id, count) values (1, 0)`,
  },
  {
    version: 2,
    name: "create bookings",
    sql: `
      create table bookings (
        id integer generated always as identity primary key,
        name text not null check (char_length(name) between 1 and 100),
        starts_at timestamptz not null,
        note text not null default '' check (char_length(note) <= 500),
        created_at timestamptz not null default now()
      );
      create index bookings_starts_at_idx on bookings (starts_at)`,
  },
];
