/** Common English words for benchmark and load-test prompts (no corpus download, unlike nltk). */
const WORDS = (
  'time year people way day man thing woman life child world school state family student group country ' +
  'problem hand part place case week company system program question work government number night point ' +
  'home water room mother area money story fact month lot right study book eye job word business issue ' +
  'side kind head house service friend father power hour game line end member law car city community name ' +
  'president team minute idea kid body information back parent face others level office door health person ' +
  'art war history party result change morning reason research girl guy moment air teacher force education ' +
  'foot boy age policy everything process music market sense nation plan college interest death experience ' +
  'effect use class control care field development role effort rate heart drug show leader light voice wife ' +
  'police mind price report decision son view relationship town road arm difference value building action ' +
  'model season society tax director position player record paper space ground form event official matter ' +
  'center couple site project activity star table need court oil situation cost industry figure street image ' +
  'phone data picture practice piece land product doctor wall patient worker news test movie north love ' +
  'support technology step baby computer type attention film tree source organization hair window evidence ' +
  'population site unit ability region bring happen write provide sit stand lose pay meet include continue ' +
  'learn lead understand watch follow stop create speak read allow add spend grow open walk win offer ' +
  'remember consider appear buy wait serve die send expect build stay fall cut reach kill remain suggest ' +
  'raise pass sell require decide return explain hope develop carry break receive agree support hit produce ' +
  'eat cover catch draw choose quickly gently bright quiet ancient modern simple strong careful green river ' +
  'mountain ocean forest garden summer winter autumn spring silver golden window bridge castle engine signal'
).split(' ');

/** A prompt of `count` random words, as PyWorker's `for_test()` builds one. */
export function randomPrompt(count: number): string {
  const words: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++)
    words[i] = WORDS[Math.floor(Math.random() * WORDS.length)] as string;
  return words.join(' ');
}
