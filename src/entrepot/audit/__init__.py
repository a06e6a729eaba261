"""`entrepot audit`: measure refusals, deflections and slant of models and hosts, per topic, with
the same yardstick for every jurisdiction."""
