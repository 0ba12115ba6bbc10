// This app's schema, one step per version. Never edit a step that has shipped: add one.
export const MIGRATIONS = [
  {
    version: 1,
    name: "create filters",
    sql: `
      create table filters (
        id integer generated always as identity primary key,
        name text not null check (char_length(name) between 1 and 100),
        pattern text not null check (char_length(pattern) between 1 and 200),
        created_at timestamptz not null default now()
      )`,
  },
  {
    version: 2,
    name: "index filters by creation time",
    sql: "create index filters_created_at_idx on filters (created_at desc)",
  },
];
