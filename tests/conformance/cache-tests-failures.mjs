#!/usr/bin/env node
// The required and optimal tests of one cache-tests result file that did not
// pass, classified as the kit's summarize.mjs does (cache-tests.fyi's
// determineTestResult, dependencies honoured), checked against the known
// failures file.
//
// usage: node cache-tests-failures.mjs SUITE_DIR RESULT.json [KNOWN.md]
//
// KNOWN.md lists each failure as a `test-id` in backquotes under the headings
// "## Required tests not passed" and "## Optimal tests not passed"; other
// backquoted words there that are not test ids are ignored.
// Prints the failures and, with KNOWN.md, whether the list matches this run:
//   known failures: match (N listed = 265 - passed)
//   known failures: MISMATCH: not listed: a b; listed but passed: c
// Exit 0 on a match (or without KNOWN.md), 3 on a mismatch.
import path from 'path'
import fs from 'fs'
import { pathToFileURL } from 'url'

const [suiteArg, resultFile, knownFile] = process.argv.slice(2)
if (!suiteArg || !resultFile) {
  console.error('usage: node cache-tests-failures.mjs SUITE_DIR RESULT.json [KNOWN.md]')
  process.exit(2)
}
const suiteDir = path.resolve(suiteArg)
const tests = (await import(pathToFileURL(path.join(suiteDir, 'tests/index.mjs')))).default
const { determineTestResult, resultTypes } = await import(pathToFileURL(path.join(suiteDir, 'test-engine/lib/results.mjs')))
const nameOf = {}
for (const [k, v] of Object.entries(resultTypes)) nameOf[v[2]] = k

const results = JSON.parse(fs.readFileSync(resultFile, 'utf8'))
const ids = new Set()
const failed = { required: [], optimal: [] }
let counted = 0
for (const suite of tests) {
  for (const t of suite.tests) {
    ids.add(t.id)
    if (t.browser_only === true) continue
    const kind = t.kind || 'required'
    if (kind === 'check') continue
    counted++
    const r = nameOf[determineTestResult(tests, t.id, results, true)[2]]
    if (r !== 'pass') failed[kind].push(`${t.id}${r === 'fail' || r === 'optional_fail' ? '' : ` (${r})`}`)
  }
}
const notPassed = [...failed.required, ...failed.optimal].map((s) => s.split(' ')[0])
console.log(`not passed: ${notPassed.length} of ${counted} (required ${failed.required.length}, optimal ${failed.optimal.length})`)
console.log(`  required: ${failed.required.join(' ') || '-'}`)
console.log(`  optimal: ${failed.optimal.join(' ') || '-'}`)
if (!knownFile) process.exit(0)

// Backquoted test ids under the two headings of KNOWN.md.
const listed = new Set()
let inList = false
for (const line of fs.readFileSync(knownFile, 'utf8').split('\n')) {
  if (line.startsWith('## ')) inList = /^## (Required|Optimal) tests not passed/.test(line)
  if (!inList) continue
  for (const m of line.matchAll(/`([^`\s]+)`/g)) if (ids.has(m[1])) listed.add(m[1])
}
const notListed = notPassed.filter((id) => !listed.has(id))
const listedPassed = [...listed].filter((id) => !notPassed.includes(id))
if (notListed.length === 0 && listedPassed.length === 0) {
  console.log(`known failures: match (${listed.size} listed = ${counted} - ${counted - notPassed.length} passed)`)
} else {
  console.log(`known failures: MISMATCH with ${path.basename(knownFile)} (${listed.size} listed, ${notPassed.length} not passed): ` +
    `not listed: ${notListed.join(' ') || '-'}; listed but passed: ${listedPassed.join(' ') || '-'}`)
  process.exit(3)
}
