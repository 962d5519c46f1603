// report.html's inspector: one probe ask's context, every strategy side by
// side, built on demand from the JSON in #inspect-data (src/report/inspector.rs).
(function(){
  var root=document.getElementById('inspector'),el=document.getElementById('inspect-data');
  if(!root||!el)return;
  var D=JSON.parse(el.textContent),F={};
  D.fields.forEach(function(f,i){F[f]=i;});
  var scSel=document.getElementById('ins-scenario'),askSel=document.getElementById('ins-ask');
  var turnBox=document.getElementById('ins-turn'),missOnly=document.getElementById('ins-misses'),head=document.getElementById('ins-head'),cols=document.getElementById('ins-cols');
  var state={sc:0,ask:0,note:''};
  function esc(s){return String(s).replace(/[&<>"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c];});}
  function fmt(n){return String(n).replace(/\B(?=(\d{3})+(?!\d))/g,',');}
  function sc(){return D.scenarios[state.sc];}
  // The strategies that missed a fact at an ask.
  function missers(a){return Object.keys(a.by).filter(function(k){var r=a.by[k][F.recall];return r!==null&&r<1;});}
  function missed(a){return missers(a).length>0;}
  // The asks the list shows: all, or those some strategy missed.
  function shown(){var s=sc(),out=[];(s.asks||[]).forEach(function(a,i){if(!missOnly.checked||missed(a))out.push(i);});return out;}
  D.scenarios.forEach(function(s,i){var o=document.createElement('option');o.value=i;o.textContent=s.name+' ('+(s.asks||[]).length+' asks)';scSel.appendChild(o);});
  function fillAsks(){
    askSel.innerHTML='';
    var s=sc();
    shown().forEach(function(i){
      var a=s.asks[i],miss=missers(a);
      var o=document.createElement('option');o.value=i;
      o.textContent='message '+a.turn+' · '+a.probe+' · '+a.question.slice(0,70)+(miss.length?'  ✗ '+miss.join(', '):'');
      askSel.appendChild(o);
    });
  }
  // A text with the spans of `phrases` marked (`old`: a superseded fact's).
  function marked(text,spans,want,old){
    var hits=(spans||[]).filter(function(sp){return want[sp[2]]||old[sp[2]];}).sort(function(a,b){return a[0]-b[0]||b[1]-a[1];});
    var out='',at=0;
    hits.forEach(function(sp){
      if(sp[1]<=at)return;
      var from=Math.max(sp[0],at);
      out+=esc(text.slice(at,from))+'<mark class="'+(want[sp[2]]?'fact':'old')+'">'+esc(text.slice(from,sp[1]))+'</mark>';
      at=sp[1];
    });
    return out+esc(text.slice(at));
  }
  function message(s,strategy,n){var own=s.own&&s.own[strategy];return (own&&own[n])||(s.msgs||[])[n-1];}
  function msgBox(s,strategy,n,label,ctx,extra){
    var m=message(s,strategy,n);
    if(!m)return '<div class="msg"><div class="mh">#'+n+' · not in the run\'s memory</div></div>';
    var planting=ctx.planting[n]?' planting':'';
    return '<div class="msg'+planting+(extra||'')+'" data-n="'+n+'"><div class="mh">#'+n+' · '+esc(m[0])+(label?' · '+label:'')+(planting?' · plants '+esc(ctx.planting[n].join(', ')):'')+'</div><div class="mt">'+marked(m[1],m[2],ctx.want,ctx.old)+'</div></div>';
  }
  function section(title,tokens,body){return '<div class="sec"><div class="sh">'+title+' <span class="tk">'+fmt(tokens)+' tokens</span></div>'+body+'</div>';}
  function column(s,a,strategy,ctx){
    var v=a.by[strategy],html='',recall=v[F.recall],total=v[F.context_tokens];
    var recalled=v[F.recalled]?v[F.recalled].split(';'):[];
    var cls=recall===null?'':recall<1?' missed':' full';
    html+='<div class="col'+cls+'" data-strategy="'+esc(strategy)+'"><h4>'+esc(strategy)+'</h4><div class="verdict">';
    html+='recall '+(recall===null?'–':recall.toFixed(3));
    if(v[F.stale])html+=' · stale '+v[F.stale];
    html+=' · '+fmt(total)+' tokens ('+Math.round(100*total/Math.max(1,D.budget))+'% of the budget)';
    if(v[F.over_window])html+=' · <b>over the model\'s window: the call would fail</b>';
    if(v[F.malformed])html+=' · <b>malformed: '+v[F.malformed]+'</b>';
    html+='</div>';
    var miss=a.expected.map(function(f,i){return [f,a.planted[i]||0];}).filter(function(p){return recalled.indexOf(p[0])<0;});
    if(miss.length){
      html+='<div class="sec lost"><div class="sh">missed</div>';
      miss.forEach(function(p){
        html+='<div class="fact">'+esc(p[0])+(p[1]?': stated at message '+p[1]+', not in this context':': not stated before this ask')+'</div>';
        if(p[1])html+=msgBox(s,strategy,p[1],'where it was stated',ctx,' absent');
      });
      html+='</div>';
    }
    html+=section('system',v[F.tokens_system],s.system?'<div class="mt">'+esc(s.system)+'</div>':'');
    var si=v[F.summary];
    if(si!==null){
      var sum=s.sums&&s.sums[strategy]&&s.sums[strategy][si];
      html+=section('summary #'+si+(sum?' · written after message '+sum[0]+', folds messages 1–'+sum[1]:''),v[F.tokens_summary],
        sum?'<div class="msg"><div class="mt">'+marked(sum[3],sum[4],ctx.want,ctx.old)+'</div></div>':'<div class="mt sub">its text is not in the run\'s memory.sqlite (a plugin keeps its own)</div>');
    }
    if(v[F.retrieved]){
      var nums=v[F.retrieved].split(';'),scores=v[F.scores].split(';'),body='';
      nums.forEach(function(n,i){body+=msgBox(s,strategy,+n,scores[i]?'score '+scores[i]:'',ctx);});
      html+=section('retrieved, best first',v[F.tokens_retrieved],body);
    }
    if(v[F.buffer]){
      var r=v[F.buffer].split('-'),b='';
      for(var n=+r[0];n<=+r[1];n++)b+=msgBox(s,strategy,n,'',ctx);
      html+=section('buffer · messages '+r[0]+'–'+r[1],v[F.tokens_buffer],'<div class="buf">'+b+'</div>');
    }
    if(v[F.answer]||v[F.answer_correct]!==null){
      var ok=v[F.answer_correct];
      html+='<div class="sec"><div class="sh">'+(D.extractive?'the offline extractive baseline\'s answer':'answer')+(ok===null?'':ok?' <span class="ok">✓ judged right</span>':' <span class="bad">✗ judged wrong</span>')+'</div><div class="mt">'+esc(v[F.answer])+'</div>'+(v[F.judge_reason]?'<div class="sub">'+esc(v[F.judge_reason])+'</div>':'')+'</div>';
    }
    return html+'</div>';
  }
  function render(){
    var t0=performance.now();
    try{draw();}finally{root.setAttribute('data-render-ms',(performance.now()-t0).toFixed(1));}
  }
  function draw(){
    var s=sc(),list=shown();
    var notes=(s.note?[s.note]:[]).concat((s.failures||[]).map(function(f){return 'not read from the run\'s memory: '+f;}));
    head.innerHTML=notes.map(function(n){return '<p class="warn">'+esc(n)+'</p>';}).join('');
    if(!list.length){cols.innerHTML='<p>No probe ask '+(missOnly.checked?'that a strategy missed ':'')+'in this scenario.</p>';publish(null);return;}
    if(list.indexOf(state.ask)<0)state.ask=list[0];
    askSel.value=String(state.ask);
    var a=s.asks[state.ask],facts=s.facts||{},want={},old={},planting={};
    a.expected.forEach(function(f){
      var fact=facts[f];if(!fact)return;
      fact[0].forEach(function(p){want[p]=1;});
      if(fact[1]&&facts[fact[1]])facts[fact[1]][0].forEach(function(p){if(!want[p])old[p]=1;});
      // A fact without phrases is recalled by its planting message itself.
      if(!fact[0].length)fact[2].forEach(function(n){(planting[n]=planting[n]||[]).push(f);});
    });
    var ctx={want:want,old:old,planting:planting};
    head.innerHTML+='<div class="ask"><b>'+esc(a.question)+'</b><div class="sub">probe <code>'+esc(a.probe)+'</code>'+(a.kind?' ('+esc(a.kind)+')':'')+', asked after message '+a.turn+'; expects '+(a.expected.map(esc).join(', ')||'nothing')+' · ask '+(list.indexOf(state.ask)+1)+' of '+list.length+'</div>'+(state.note?'<div class="sub note">'+esc(state.note)+'</div>':'')+'</div>';
    var html='';
    D.strategies.forEach(function(k){if(a.by[k])html+=column(s,a,k,ctx);});
    cols.innerHTML=html;
    // Each buffer opens at its first marked phrase, else at its latest message.
    cols.querySelectorAll('.buf').forEach(function(b){
      var m=b.querySelector('mark.fact,.msg.planting');
      b.scrollTop=m?m.closest('.msg').offsetTop:b.scrollHeight;
    });
    publish(a);
  }
  // What the page shows, for a reader and for the browser test.
  function publish(a){
    var s=sc();
    root.setAttribute('data-inspect',a?s.name+'/'+a.turn+'/'+a.probe:'');
    root.setAttribute('data-columns',String(cols.querySelectorAll('.col').length));
    root.setAttribute('data-marks',String(cols.querySelectorAll('mark.fact').length));
    root.setAttribute('data-absent',String(cols.querySelectorAll('.msg.absent').length));
    root.setAttribute('data-top',String(Math.round(root.getBoundingClientRect().top+window.scrollY)));
    if(a)turnBox.value=String(a.turn);
    if(a)history.replaceState(null,'','#inspect='+encodeURIComponent(s.name)+'/'+a.turn+'/'+encodeURIComponent(a.probe));
  }
  function go(s,turn,probe,note){
    if(s<0||s>=D.scenarios.length)return false;
    state.sc=s;scSel.value=String(s);
    var asks=D.scenarios[s].asks||[],best=-1;
    asks.forEach(function(a,i){
      if(probe!==undefined&&a.turn===turn&&a.probe===probe)best=i;
      else if(probe===undefined&&(best<0||Math.abs(a.turn-turn)<Math.abs(asks[best].turn-turn)))best=i;
    });
    if(best<0)return false;
    if(missOnly.checked&&shown().indexOf(best)<0)missOnly.checked=false;
    state.ask=best;state.note=note||'';
    fillAsks();render();return true;
  }
  function step(d){var list=shown(),i=list.indexOf(state.ask)+d;if(i>=0&&i<list.length){state.ask=list[i];state.note='';render();}}
  function stepScenario(d){var n=state.sc+d;if(n>=0&&n<D.scenarios.length){state.sc=n;state.ask=0;state.note='';scSel.value=String(n);fillAsks();render();}}
  scSel.addEventListener('change',function(){state.sc=+scSel.value;state.ask=0;state.note='';fillAsks();render();});
  askSel.addEventListener('change',function(){state.ask=+askSel.value;state.note='';render();});
  missOnly.addEventListener('change',function(){fillAsks();render();});
  document.getElementById('ins-prev').addEventListener('click',function(){step(-1);});
  document.getElementById('ins-next').addEventListener('click',function(){step(1);});
  document.addEventListener('keydown',function(e){
    var t=e.target&&e.target.tagName;
    if(t==='INPUT'||t==='TEXTAREA'||e.ctrlKey||e.metaKey||e.altKey)return;
    if(t==='SELECT'&&e.key.indexOf('Arrow')===0)return;
    var k=e.key;
    if(k==='ArrowRight'||k==='j')step(1);
    else if(k==='ArrowLeft'||k==='k')step(-1);
    else if(k===']')stepScenario(1);
    else if(k==='[')stepScenario(-1);
    else if(k==='m'){missOnly.checked=!missOnly.checked;fillAsks();render();}
    else return;
    e.preventDefault();
  });
  function byName(name){for(var i=0;i<D.scenarios.length;i++)if(D.scenarios[i].name===name)return i;return -1;}
  // A chart's click: the probe ask nearest the message under the pointer.
  document.querySelectorAll('figure[data-axis]').forEach(function(fig){
    var svg=fig.querySelector('svg'),ax=fig.getAttribute('data-axis').split(' ').map(Number),s=byName(fig.getAttribute('data-scenario'));
    svg.addEventListener('click',function(e){
      var pt=svg.createSVGPoint();pt.x=e.clientX;pt.y=e.clientY;
      var p=pt.matrixTransform(svg.getScreenCTM().inverse());
      var turn=Math.round(ax[2]+(p.x-ax[0])/(ax[1]-ax[0])*(ax[3]-ax[2]));
      turn=Math.max(ax[2],Math.min(ax[3],turn));
      if(nearest(s,turn,'clicked'))root.scrollIntoView();
    });
  });
  // The ask nearest message `turn` of scenario `s`, saying so when no
  // probe was asked right there.
  function nearest(s,turn,how){
    if(!go(s,turn,undefined,''))return false;
    var a=sc().asks[state.ask];
    if(a.turn!==turn){state.note='message '+turn+' was '+how+'; no probe was asked there, and this is the nearest ask. `memeval inspect` rebuilds any call\'s context: memeval inspect <run folder> --scenario '+sc().name+' --turn '+turn;render();}
    return true;
  }
  turnBox.addEventListener('change',function(){var t=parseInt(turnBox.value,10);if(t>=0)nearest(state.sc,t,'asked for');});
  function fromHash(){
    var h=decodeURIComponent(location.hash.slice(1)),m=/^inspect=(.*)\/(\d+)\/([^&]*)/.exec(location.hash.slice(1));
    if(m&&go(byName(decodeURIComponent(m[1])),+m[2],decodeURIComponent(m[3])))root.scrollIntoView();
    // Keys replayed through the page's own handlers (`&keys=ArrowRight,]`).
    var keys=/&keys=([^&]*)/.exec(h);
    // A click on a chart (`&click=<scenario>/<chart>/<share of the x axis>`),
    // at the point of the screen where that message is drawn.
    var click=/&click=([^&]*)\/([^&\/]*)\/([\d.]+)/.exec(h);
    if(click)document.querySelectorAll('figure[data-axis]').forEach(function(fig){
      if(fig.getAttribute('data-scenario')!==click[1]||fig.getAttribute('data-chart')!==click[2])return;
      var svg=fig.querySelector('svg'),ax=fig.getAttribute('data-axis').split(' ').map(Number),pt=svg.createSVGPoint();
      pt.x=ax[0]+(+click[3])*(ax[1]-ax[0]);pt.y=svg.viewBox.baseVal.height/2;
      var c=pt.matrixTransform(svg.getScreenCTM());
      svg.dispatchEvent(new MouseEvent('click',{clientX:c.x,clientY:c.y,bubbles:true}));
    });
    // A message number typed into the box (`&turn=40`).
    var typed=/&turn=(\d+)/.exec(h);
    if(typed){turnBox.value=typed[1];turnBox.dispatchEvent(new Event('change'));}
    if(keys)keys[1].split(',').forEach(function(k){document.dispatchEvent(new KeyboardEvent('keydown',{key:k,bubbles:true}));});
    return !!(m||click||typed);
  }
  window.addEventListener('hashchange',fromHash);
  fillAsks();
  if(!fromHash()&&D.scenarios.length)render();
  root.setAttribute('data-asks',String(D.scenarios.reduce(function(n,s){return n+(s.asks||[]).length;},0)));
})();
